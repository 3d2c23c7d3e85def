"""The OpenAI completions protocol as ``harness serve`` speaks it: request checks and response bodies.

Only what the harness can honour is accepted: one prompt (text or token ids), ``max_tokens``,
``temperature``, ``top_k``, ``seed``, ``stream``, ``logprobs`` (the sampled token's log-probability under the
raw distribution, as the harness defines it; ``top_logprobs`` stays empty), ``return_token_ids``. A field
that would change the result and is not supported (``n`` > 1, ``echo``, ``stop``, ``top_p`` < 1, ...) is a
400 naming it, never silently ignored. Two fields beyond OpenAI's: each choice carries ``token_ids`` (as
vLLM does with ``return_token_ids``) and its final chunk the harness's ``stop_reason``; each response echoes
the ``sampling`` it applied, which the ``openai`` backend records in the run's manifest.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from harness.types import MAX_NEW_TOKENS, MAX_SEED, MAX_TOP_K

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class BadRequest(Exception):
    """A request the server refuses with 400 (or ``status``); the message names the field."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str | list[int]
    max_tokens: int
    temperature: float
    top_k: int | None
    seed: int
    stream: bool
    logprobs: bool
    token_ids: bool
    include_usage: bool

    def echo(self) -> dict[str, Any]:
        """What the server applied, echoed in every response."""
        return {k: v for k, v in asdict(self).items() if k in ("max_tokens", "temperature", "top_k", "seed")}


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(f"'{key}' must be a number from {low} to {high}, got {value!r}")
    return value


def _integer(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"'{key}' must be an integer from {low} to {high}, got {value!r}")
    return value


def _prompt(body: dict[str, Any]) -> str | list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str) and prompt:
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt
    raise BadRequest("'prompt' must be one non-empty string or one non-empty list of token ids")


def parse_completion(body: Any, model_name: str) -> CompletionRequest:
    """A checked request, or ``BadRequest`` naming the first field the server cannot honour."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if body.get("model") not in (None, model_name):
        raise BadRequest(f"model {body.get('model')!r} is not served here; this server serves {model_name!r}", 404)
    if _integer(body, "n", 1, 1, 1) != 1 or body.get("best_of") not in (None, 1):
        raise BadRequest("'n' and 'best_of' must be 1")
    if body.get("echo"):
        raise BadRequest("'echo' is not supported")
    if body.get("stop") not in (None, [], ""):
        raise BadRequest("'stop' is not supported (generation stops at the model's end-of-text token)")
    if _number(body, "top_p", 1.0, 0.0, 1.0) != 1.0:
        raise BadRequest("'top_p' below 1 is not supported; use top_k")
    for key in ("presence_penalty", "frequency_penalty"):
        if _number(body, key, 0.0, -2.0, 2.0) != 0:
            raise BadRequest(f"'{key}' is not supported")
    for key in ("repeat_penalty", "repetition_penalty"):  # llama.cpp's and vLLM's names; 1 is "off"
        if _number(body, key, 1.0, 0.0, 100.0) != 1:
            raise BadRequest(f"'{key}' is not supported (only 1, no penalty)")
    if _number(body, "min_p", 0.0, 0.0, 1.0) != 0:
        raise BadRequest("'min_p' is not supported; use top_k")
    top_k = _integer(body, "top_k", None, -1, MAX_TOP_K)
    seed = _integer(body, "seed", None, 0, MAX_SEED)
    options = body.get("stream_options") or {}
    logprobs = _integer(body, "logprobs", None, 0, 20)
    return CompletionRequest(
        prompt=_prompt(body),
        max_tokens=int(_integer(body, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_NEW_TOKENS)),
        temperature=float(_number(body, "temperature", 1.0, 0.0, 100.0)),
        top_k=None if top_k in (None, -1, 0) else top_k,
        seed=seed if seed is not None else int.from_bytes(os.urandom(8), "little") & MAX_SEED,
        stream=bool(body.get("stream", False)),
        logprobs=logprobs is not None,
        token_ids=bool(body.get("return_token_ids", True)),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
    )


class ResponseBuilder:
    """The JSON bodies of one completion: streamed chunks or one whole answer."""

    def __init__(self, request: CompletionRequest, model_name: str) -> None:
        self.request, self.model_name = request, model_name
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model_name,
            "choices": choices,
            "sampling": self.request.echo(),
        }

    def choice(
        self,
        text: str,
        ids: list[int],
        pieces: list[str],
        logprobs: list[float],
        offset: int,
        finish: str | None = None,
        stop_reason: str | None = None,
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        if self.request.logprobs:
            offsets, position = [], offset
            for piece in pieces:
                offsets.append(position)
                position += len(piece)
            choice["logprobs"] = {
                "tokens": pieces,
                "token_logprobs": logprobs,
                "top_logprobs": None,
                "text_offset": offsets,
            }
        if self.request.token_ids:
            choice["token_ids"] = ids
        if stop_reason is not None:
            choice["stop_reason"] = stop_reason
        return choice

    def chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        return self._envelope([choice])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {**self._envelope([]), "usage": self.usage(prompt_tokens, completion_tokens)}

    def whole(self, choice: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {**self._envelope([choice]), "usage": self.usage(prompt_tokens, completion_tokens)}


def finish_reason(stop_reason: str) -> str:
    """OpenAI's two reasons: ``stop`` for the model's own end, ``length`` for every limit."""
    return "stop" if stop_reason == "eos" else "length"


def error_body(message: str, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}
