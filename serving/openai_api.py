"""The OpenAI-compatible chat route that the local predictor and the prompt transformer both serve.

KServe 0.21's own OpenAI layer (``kserve.protocol.rest.openai``) imports its request and response
types from vLLM, so it cannot load in an image without vLLM (the CPU image, the transformer, a
laptop). This module adds the one route clients need, ``POST /openai/v1/chat/completions`` (the
path KServe's Hugging Face runtime uses), plus ``GET /openai/v1/models``, to KServe's own FastAPI
app, dispatching to ``kserve.Model`` objects that implement ``async chat(request) -> ChatReply``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from champion.errors import ServingError

CHAT_ROUTE = "/openai/v1/chat/completions"
MODELS_ROUTE = "/openai/v1/models"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, content):
        """OpenAI's content parts (``[{"type": "text", "text": ...}]``) are joined into one text; any other part
        (an image, audio) is refused, since the bundle's prompt takes text."""
        if not isinstance(content, list):
            return content
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"only text content parts are served, got a {kind!r} part")
            texts.append(part["text"])
        return "\n".join(texts)


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat request that champion honours; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    seed: int | None = None
    stop: list[str] | str | None = None
    stream: bool = False


@dataclass
class ChatReply:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    headers: dict[str, str] = field(default_factory=dict)


def completion_body(model: str, reply: ChatReply) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": reply.finish_reason}
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def error_body(message: str, status: int) -> dict:
    kind = {
        400: "BadRequestError",
        404: "NotFoundError",
        422: "BadRequestError",
        502: "BadGateway",
        503: "ServiceUnavailableError",
    }.get(status, "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


def parse_chat_request(body: object) -> ChatRequest:
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ServingError(
            f"invalid chat request: {where}: {first['msg']}.",
            "send {'model': ..., 'messages': [{'role': 'user', 'content': ...}]}.",
            400,
        ) from exc
    if request.stream:
        raise ServingError("streaming is not supported by this server.", "send the request with stream=false.", 400)
    return request


def _lookup(registry, name: str):
    """The served chat model a request names (or the only one served)."""
    models = {model_name: model for model_name, model in registry.get_models().items() if hasattr(model, "chat")}
    if name in models:
        return name, models[name]
    if not name and len(models) == 1:
        return next(iter(models.items()))
    raise ServingError(f"model {name!r} is not served here.", f"use one of {sorted(models)}.", 404)


def _count_refusal(registry, body: object, request: Request, status: int) -> None:
    """A request refused before any model saw it is still counted (/metrics) and logged, against the model it
    named (or the only one served); an unknown model's requests have no bundle to count them under."""
    name = body.get("model", "") if isinstance(body, dict) else ""
    try:
        _, model = _lookup(registry, name if isinstance(name, str) else "")
    except ServingError:
        return
    if hasattr(model, "refused"):
        model.refused(status, request.headers.get("x-request-id", ""))


def add_openai_routes(app, registry) -> None:
    """Register the chat and models routes on KServe's FastAPI ``app`` for the models in ``registry``."""

    async def chat_completions(request: Request):
        body: object = None
        answered = False
        try:
            try:
                body = await request.json()
            except ValueError as exc:
                raise ServingError("the request body is not JSON.", "send a JSON chat request.", 400) from exc
            chat = parse_chat_request(body)
            name, model = _lookup(registry, chat.model)
            if not model.ready:
                raise ServingError(
                    f"model {name!r} is still loading.", "retry when /v2/health/ready reports ready.", 503
                )
            # A mirrored request keeps its id (gateways copy the headers), so the shadow gate can pair
            # the live and the shadow answer to one request.
            answered = True  # from here the model counts and logs the request itself
            reply = await model.chat(
                chat, request_id=request.headers.get("x-request-id", ""), trace_headers=dict(request.headers)
            )
        except ServingError as exc:
            if not answered:
                _count_refusal(registry, body, request, exc.status)
            return JSONResponse(error_body(str(exc), exc.status), status_code=exc.status)
        return JSONResponse(completion_body(name, reply), headers=reply.headers)

    async def list_models():
        names = sorted(name for name, model in registry.get_models().items() if hasattr(model, "chat"))
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "champion"} for name in names]}

    app.add_api_route(CHAT_ROUTE, chat_completions, methods=["POST"])
    app.add_api_route(MODELS_ROUTE, list_models, methods=["GET"])


def serve(models: list, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run KServe's ModelServer for ``models`` with the chat route, bound to ``host``.

    ModelServer.start() always binds 0.0.0.0; a laptop server should not listen on every interface,
    so the REST server is built from the same parts with the host set. gRPC is off (unused).
    """
    import asyncio

    from kserve import ModelServer
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING, app
    from kserve.protocol.rest.server import RESTServer

    server = ModelServer(http_port=port, enable_grpc=False, workers=1)
    server._register_and_check_atleast_one_model_is_ready(models)
    add_openai_routes(app, server.registered_models)
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port)
    rest.config.host = host
    asyncio.run(rest.start())
