"""A CPU predictor for local serving: a ``kserve.Model`` that generates with champion's backends.

On a cluster the predictor is KServe's Hugging Face runtime with vLLM (or KServe's vLLM runtime);
locally this stands in for it with the transformers backend and the same OpenAI-compatible route,
so the prompt transformer in front of it cannot tell the difference.

    python -m serving.predictor --model_name smollm2 --model_dir PATH --http_port 8081
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import kserve

from champion import tracing
from champion.errors import ServingError
from generation import Generator, get_generator
from generation.context import context_limit, prompt_tokens
from prompts import Decoding
from serving.openai_api import ChatReply, ChatRequest, serve

# No token of a real tokenizer spans more characters than this: a request longer than context x this cannot fit,
# and is refused before the tokenizer spends time and memory on it.
MAX_CHARACTERS_PER_TOKEN = 32


def request_decoding(request: ChatRequest) -> Decoding:
    """Decoding from the request; fields the client left out take champion's explicit defaults."""
    given = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    }
    stop = [request.stop] if isinstance(request.stop, str) else (request.stop or [])
    return Decoding(**{key: value for key, value in given.items() if value is not None}, stop=tuple(stop))


class GeneratorModel(kserve.Model):
    """Serves one model directory through a champion ``Generator`` (one request at a time)."""

    def __init__(
        self, name: str, model_dir: str, *, backend: str = "transformers", trust_remote_code: bool = False
    ) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.backend = backend
        self.trust_remote_code = trust_remote_code
        self.generator: Generator | None = None
        self._lock = asyncio.Lock()
        self.context = context_limit(model_dir)
        self.tokenizer: Any = None  # the model's tokenizer, to measure prompts against the context

    def load(self) -> bool:
        self.generator = get_generator(
            self.backend, self.model_dir, batch_size=1, trust_remote_code=self.trust_remote_code
        )
        if self.context is not None:  # the generator's own tokenizer when it has one (transformers), loaded once
            self.tokenizer = getattr(self.generator, "tokenizer", None)
            if self.tokenizer is None:
                from transformers import AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=self.trust_remote_code)
        self.ready = True
        return self.ready

    def check_fits(self, conversation: list[dict[str, str]], decoding: Decoding) -> None:
        """Refuse a request whose prompt cannot fit the model's context with room for its answer, as batch
        generation does: a huge request is refused by its length before it is tokenized, a long one once counted."""
        if self.context is None or self.tokenizer is None:
            return
        characters = sum(len(message["content"]) for message in conversation)
        fix = f"send a shorter message: the model's context is {self.context} tokens, max_tokens included."
        if characters > self.context * MAX_CHARACTERS_PER_TOKEN:
            raise ServingError(
                f"the request has {characters} characters, more than the model's context can hold.", fix, 400
            )
        tokens = prompt_tokens(self.tokenizer, conversation)
        if tokens + decoding.max_tokens > self.context:
            raise ServingError(
                f"the prompt is {tokens} tokens; with max_tokens={decoding.max_tokens} it exceeds the model's context "
                f"of {self.context} tokens.",
                fix,
                400,
            )

    async def chat(self, request: ChatRequest, request_id: str = "", trace_headers=None) -> ChatReply:
        """Generate one answer; a span continuing the caller's trace (the transformer's traceparent) times it."""
        from opentelemetry.trace import SpanKind

        with tracing.tracer("champion.serving").start_as_current_span(
            "predictor generate",
            context=tracing.carrier_context(trace_headers),
            kind=SpanKind.SERVER,
            attributes={"champion.backend": self.backend},
        ) as span:
            reply = await self._generate(request)
            span.set_attribute("gen_ai.usage.output_tokens", reply.completion_tokens)
            return reply

    async def _generate(self, request: ChatRequest) -> ChatReply:
        conversation = [{"role": message.role, "content": message.content} for message in request.messages]
        try:
            decoding = request_decoding(request)
        except ValueError as exc:
            raise ServingError(
                f"invalid decoding parameters: {exc}",
                "send temperature, top_p, max_tokens within OpenAI's ranges.",
                400,
            ) from exc
        await asyncio.to_thread(self.check_fits, conversation, decoding)
        async with self._lock:  # the model is not re-entrant; a queue of one keeps memory flat
            assert self.generator is not None, "load() runs before the server answers"
            generation = (await asyncio.to_thread(self.generator.generate, [conversation], decoding))[0]
        return ChatReply(
            generation.text, generation.finish_reason, generation.prompt_tokens, generation.completion_tokens
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="champion's local CPU predictor (OpenAI-compatible chat route)")
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--http_port", type=int, default=8081)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    model = GeneratorModel(args.model_name, args.model_dir, backend=args.backend)
    model.load()
    serve([model], host=args.host, port=args.http_port)


if __name__ == "__main__":
    main()
