"""The prompt transformer: a ``kserve.Model`` that applies the promoted bundle's prompt and decoding.

Clients send plain messages to ``/openai/v1/chat/completions``; the transformer renders the bundle's
prompt template around the last user message, sets the bundle's decoding parameters (the ones the
gate evaluated, whatever the client asked for), and forwards the chat to the predictor's
OpenAI-compatible route. On a cluster it is the InferenceService's ``transformer`` container; locally
``champion serve`` runs it in front of the CPU predictor. Same code, same behaviour.

The prompt travels with the deployment (environment ``CHAMPION_PROMPT``, the template as JSON) and is
checked against the bundle's digest at start, so a served prompt is exactly the evaluated one.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import httpx
import kserve
from opentelemetry.trace import SpanKind, Status, StatusCode, use_span

from champion import tracing
from champion.errors import BackendError, PromptError, ServingError
from generation.openai_backend import chat_request, parse_chat_response
from prompts import PromptTemplate
from serving import metrics
from serving.openai_api import ChatReply, ChatRequest, serve
from serving.request_log import RequestLog, new_request_id

PROMPT_ENV = "CHAMPION_PROMPT"
PROMPT_DIGEST_ENV = "CHAMPION_PROMPT_DIGEST"
BUNDLE_ENV = "CHAMPION_BUNDLE_ID"
MODEL_DIGEST_ENV = "CHAMPION_MODEL_DIGEST"


def prompt_from_env(environ=os.environ) -> PromptTemplate:
    """The prompt the deployment carries, refused unless its digest is the bundle's."""
    raw = environ.get(PROMPT_ENV, "")
    if not raw:
        raise PromptError(
            f"{PROMPT_ENV} is not set, so the transformer has no prompt to apply.",
            "deploy through champion, which sets it from the promoted bundle.",
        )
    prompt = PromptTemplate.model_validate_json(raw)
    expected = environ.get(PROMPT_DIGEST_ENV, "")
    if prompt.digest != expected:
        raise PromptError(
            f"the prompt in {PROMPT_ENV} has digest {prompt.digest[:12]}, the bundle's is {expected[:12] or 'missing'}.",
            "redeploy the bundle with champion; never edit the prompt of a running deployment by hand.",
        )
    return prompt


def prompt_values(prompt: PromptTemplate, user_content: str) -> dict[str, str]:
    """Map the client's message onto the template's variables: the text itself for a one-variable
    prompt, a JSON object naming every variable otherwise."""
    if len(prompt.variables) == 1:
        return {prompt.variables[0]: user_content}
    try:
        values = json.loads(user_content)
    except ValueError:
        values = None
    if not isinstance(values, dict) or set(values) != set(prompt.variables):
        raise ServingError(
            f"prompt {prompt.name} v{prompt.version} takes variables {sorted(prompt.variables)}.",
            "send the last user message as a JSON object with exactly those keys.",
            400,
        )
    return {key: str(value) for key, value in values.items()}


class PromptTransformer(kserve.Model):
    def __init__(
        self,
        name: str,
        prompt: PromptTemplate,
        predictor_url: str,
        *,
        bundle_id: str = "",
        model_digest: str = "",
        upstream_model: str | None = None,
        timeout_s: float = 120.0,
        request_log: RequestLog | None = None,
    ) -> None:
        super().__init__(name)
        self.prompt = prompt
        self.bundle_id = bundle_id
        self.model_digest = model_digest
        self.request_log = request_log
        self.upstream_model = upstream_model or name
        self.chat_url = predictor_url.rstrip("/") + "/v1/chat/completions"
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self.ready = True

    def render(self, request: ChatRequest) -> list[dict[str, str]]:
        user_turns = [message for message in request.messages if message.role == "user"]
        if not user_turns:
            raise ServingError("the request has no user message.", "send at least one message with role 'user'.", 400)
        try:
            return self.prompt.render(**prompt_values(self.prompt, user_turns[-1].content))
        except PromptError as exc:
            raise ServingError(str(exc), "", 400) from exc

    async def chat(self, request: ChatRequest, request_id: str = "", trace_headers=None) -> ChatReply:
        """Answer one chat request. ``trace_headers`` (the caller's ``traceparent``) make its span a child of
        the caller's trace; the predictor's request carries this span's context on."""
        request_id = request_id or new_request_id()
        started = time.perf_counter()
        status, reply = 500, None
        span = tracing.tracer("champion.serving").start_span(
            "champion chat",
            context=tracing.carrier_context(trace_headers),
            kind=SpanKind.SERVER,
            attributes={
                "champion.bundle_id": self.bundle_id,
                "champion.prompt": f"{self.prompt.name}@{self.prompt.version}",
                "champion.prompt_digest": self.prompt.digest,
                "champion.model_digest": self.model_digest,
                "champion.request_id": request_id,
            },
        )
        try:
            with use_span(span, end_on_exit=False):
                reply = await self._forward(request)
            status = 200
            reply.headers["x-request-id"] = request_id
            return reply
        except ServingError as exc:
            status = exc.status
            span.set_status(Status(StatusCode.ERROR, exc.problem[:200]))
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            if reply is not None:
                span.set_attribute("gen_ai.usage.input_tokens", reply.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", reply.completion_tokens)
            span.end()
            user_turns = [m.content for m in request.messages if m.role == "user"]
            self._record(
                request_id, status, time.perf_counter() - started, reply, user_turns[-1] if user_turns else None
            )

    def refused(self, status: int, request_id: str = "") -> None:
        """A request refused before it reached ``chat`` (not JSON, not a chat request, streaming): counted and
        logged like any other answer, with no content (there was none to keep)."""
        self._record(request_id or new_request_id(), status, 0.0, None, None)

    def _record(
        self, request_id: str, status: int, latency_s: float, reply: ChatReply | None, question: str | None
    ) -> None:
        """Every answer, whatever its status, in /metrics and (when one is configured) the request log."""
        prompt = f"{self.prompt.name}@{self.prompt.version}"
        metrics.observe(
            bundle_id=self.bundle_id,
            prompt=prompt,
            status=status,
            latency_s=latency_s,
            prompt_tokens=reply.prompt_tokens if reply else 0,
            completion_tokens=reply.completion_tokens if reply else 0,
        )
        if self.request_log is not None:
            self.request_log.submit(  # off the request path: written by the log's own thread
                request_id=request_id,
                bundle_id=self.bundle_id,
                prompt=prompt,
                prompt_digest=self.prompt.digest,
                model_digest=self.model_digest,
                decoding=self.prompt.decoding.model_dump(mode="json"),
                status=status,
                latency_s=round(latency_s, 6),
                prompt_tokens=reply.prompt_tokens if reply else 0,
                completion_tokens=reply.completion_tokens if reply else 0,
                question=question,
                answer=reply.text if reply else None,
            )

    async def _forward(self, request: ChatRequest) -> ChatReply:
        body = chat_request(self.upstream_model, self.render(request), self.prompt.decoding)
        with tracing.tracer("champion.serving").start_as_current_span(
            "predictor chat completion", kind=SpanKind.CLIENT, attributes={"server.address": self.chat_url}
        ):
            return await self._ask_predictor(body)

    async def _ask_predictor(self, body: dict) -> ChatReply:
        try:
            # The predictor (vLLM, llm-d) continues the trace from this span's traceparent.
            response = await self.client.post(self.chat_url, json=body, headers=tracing.inject_headers({}))
        except httpx.HTTPError as exc:
            raise ServingError(
                f"the predictor at {self.chat_url} is unreachable: {type(exc).__name__}.",
                "check that the predictor is running and ready.",
                503,
            ) from exc
        if (
            response.status_code == 400
        ):  # the request itself (too long for the context, bad decoding): the client's to fix
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise ServingError(message, "", 400)
        if response.status_code != 200:
            raise ServingError(
                f"the predictor answered HTTP {response.status_code}: {response.text[:200]}",
                "see the predictor's log.",
                502,
            )
        try:
            generation = parse_chat_response(response.json())
        except (BackendError, ValueError) as exc:
            raise ServingError(
                f"the predictor's reply is not a chat completion: {response.text[:200]}",
                "point the transformer at an OpenAI-compatible route.",
                502,
            ) from exc
        headers = {
            "x-champion-prompt": f"{self.prompt.name}@{self.prompt.version}",
            "x-champion-prompt-digest": self.prompt.digest,
        }
        if self.bundle_id:
            headers["x-champion-bundle"] = self.bundle_id
        return ChatReply(
            generation.text, generation.finish_reason, generation.prompt_tokens, generation.completion_tokens, headers
        )


def predictor_url(host: str, *, use_ssl: bool = False, route_prefix: str = "/openai") -> str:
    return f"{'https' if use_ssl else 'http'}://{host}{route_prefix}"


def main(argv: list[str] | None = None) -> None:
    # KServe appends --model_name, --predictor_host and --http_port (and may add more) to a custom
    # transformer's arguments, so unknown flags are tolerated.
    parser = argparse.ArgumentParser(description="champion's prompt transformer (OpenAI-compatible chat route)")
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--predictor_host", required=True)
    parser.add_argument("--predictor_use_ssl", action="store_true")
    parser.add_argument(
        "--predictor_route_prefix",
        default="/openai",
        help="'/openai' for KServe's Hugging Face runtime, '' for the vLLM runtime",
    )
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    args, _ = parser.parse_known_args(argv)
    prompt = prompt_from_env()
    model = PromptTransformer(
        args.model_name,
        prompt,
        predictor_url(args.predictor_host, use_ssl=args.predictor_use_ssl, route_prefix=args.predictor_route_prefix),
        bundle_id=os.environ.get(BUNDLE_ENV, ""),
        model_digest=os.environ.get(MODEL_DIGEST_ENV, ""),
        request_log=RequestLog.from_env(),
    )
    serve([model], host=args.host, port=args.http_port)


if __name__ == "__main__":
    main()
