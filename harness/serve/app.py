"""The ASGI application of ``harness serve``: OpenAI-compatible routes over one loaded harness model.

Routes: ``POST /v1/completions`` (streamed as server-sent events or whole), ``GET /v1/models``,
``GET /health``, and vLLM's ``POST /tokenize`` / ``POST /detokenize`` (the ``openai`` backend uses them to
encode prompts exactly as the served model does).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.metrics.memory import peak_memory_mb
from harness.serve.protocol import (
    BadRequest,
    CompletionRequest,
    ResponseBuilder,
    error_body,
    finish_reason,
    parse_completion,
)
from harness.serve.worker import Finished, GenerationWorker, Job, QueueFull, Token, describe
from harness.types import Model, SamplingParams


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, status), status_code=status, headers=headers)


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class TextStream:
    """Incremental detokenisation: the text a token adds, held back while it ends in a split character."""

    def __init__(self, model: Model) -> None:
        self.model, self.ids, self.sent = model, [], ""

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.model.decode(self.ids)
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""  # a multi-byte character split across tokens: wait for the rest
        delta, self.sent = text[len(self.sent) :], text
        return delta

    def flush(self) -> str:
        text = self.model.decode(self.ids)
        delta = text[len(self.sent) :] if text.startswith(self.sent) else ""
        self.sent = text
        return delta


def _logprob(value: float) -> float | None:
    return value if math.isfinite(value) else None


def create_app(model: Model, served_name: str, max_queue: int = 256) -> Starlette:
    """An app serving ``model`` as ``served_name``; generation runs on one worker thread (see worker)."""
    worker = GenerationWorker(model, max_queue)

    async def health(request: Request) -> Response:
        # the server's peak memory: what the openai backend records as the served model's peak_mem_mb
        peak = peak_memory_mb(model.info.device)
        return JSONResponse({"status": "ok", "queued": worker.waiting, "refused": worker.refused, "peak_mem_mb": peak})

    async def models(request: Request) -> Response:
        entry = {
            "id": served_name,
            "object": "model",
            "created": 0,
            "owned_by": "tinylm-harness",
            "max_model_len": model.info.context_length,
            "harness": describe(model),
        }
        return JSONResponse({"object": "list", "data": [entry]})

    async def body_of(request: Request) -> Any:
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the request body is not JSON") from None

    async def tokenize(request: Request) -> Response:
        try:
            body = await body_of(request)
            prompt = body.get("prompt") if isinstance(body, dict) else None
            if not isinstance(prompt, str):
                raise BadRequest("'prompt' must be a string")
        except BadRequest as exc:
            return _error(str(exc), exc.status)
        tokens = model.encode(prompt)
        return JSONResponse({"tokens": tokens, "count": len(tokens), "max_model_len": model.info.context_length})

    async def detokenize(request: Request) -> Response:
        try:
            body = await body_of(request)
            tokens = body.get("tokens") if isinstance(body, dict) else None
            if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
                raise BadRequest("'tokens' must be a list of token ids")
            if any(not 0 <= t < model.info.vocab_size for t in tokens):
                raise BadRequest(f"token ids must be from 0 to {model.info.vocab_size - 1}")
        except BadRequest as exc:
            return _error(str(exc), exc.status)
        return JSONResponse({"prompt": model.decode(tokens)})

    def prompt_ids(request: CompletionRequest) -> list[int]:
        ids = model.encode(request.prompt) if isinstance(request.prompt, str) else list(request.prompt)
        if any(not 0 <= t < model.info.vocab_size for t in ids):
            raise BadRequest(f"prompt token ids must be from 0 to {model.info.vocab_size - 1}")
        if len(ids) >= model.info.context_length:
            raise BadRequest(
                f"the prompt has {len(ids)} tokens; the context holds {model.info.context_length} with room for one more"
            )
        return ids

    async def completions(request: Request) -> Response:
        try:
            parsed = parse_completion(await body_of(request), served_name)
            ids = prompt_ids(parsed)
            sampling = SamplingParams(
                temperature=parsed.temperature, top_k=parsed.top_k, max_new_tokens=parsed.max_tokens, seed=parsed.seed
            )
            job = worker.submit(ids, sampling, parsed.seed)
        except BadRequest as exc:
            return _error(str(exc), exc.status)
        except QueueFull as exc:
            return _error(f"busy: {exc}; retry later", 503, {"Retry-After": "1"})
        builder = ResponseBuilder(parsed, served_name)
        if parsed.stream:
            return StreamingResponse(stream(job, builder, len(ids), request), media_type="text/event-stream")
        return await whole(job, builder, len(ids))

    async def stream(job: Job, builder: ResponseBuilder, n_prompt: int, request: Request) -> AsyncIterator[bytes]:
        text, count, offset = TextStream(model), 0, 0
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, Token):
                    delta = text.add(event.id)
                    piece = model.decode([event.id])
                    yield _sse(
                        builder.chunk(builder.choice(delta, [event.id], [piece], [_logprob(event.logprob)], offset))
                    )
                    offset += len(piece)
                    count += 1
                    continue
                if event.error is not None:
                    yield _sse(error_body(f"generation failed: {event.error.__class__.__name__}: {event.error}", 500))
                    return
                stop = event.generation.stop_reason
                last = builder.choice(text.flush(), [], [], [], offset, finish_reason(stop), stop)
                yield _sse(builder.chunk(last))
                if builder.request.include_usage:
                    yield _sse(builder.usage_chunk(n_prompt, count))
                yield _sse("[DONE]")
                return
        finally:  # the client went away (or the answer is complete): stop generating for it
            job.cancelled.set()

    async def whole(job: Job, builder: ResponseBuilder, n_prompt: int) -> Response:
        tokens: list[Token] = []
        while True:
            event = await job.events.get()
            if isinstance(event, Token):
                tokens.append(event)
                continue
            break
        assert isinstance(event, Finished)
        if event.error is not None:
            return _error(f"generation failed: {event.error.__class__.__name__}: {event.error}", 500)
        ids = [t.id for t in tokens]
        pieces = [model.decode([i]) for i in ids]
        stop = event.generation.stop_reason
        choice = builder.choice(
            model.decode(ids), ids, pieces, [_logprob(t.logprob) for t in tokens], 0, finish_reason(stop), stop
        )
        return JSONResponse(builder.whole(choice, n_prompt, len(ids)))

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        worker.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.worker = worker
    return app
