"""A misbehaving OpenAI-compatible server for the ``openai`` backend's fault tests (a real server process).

``python fault_server.py MODE PORT TOKENIZER_JSON``; MODE decides how ``/v1/completions`` answers:

- ``die``: streams two tokens, then the process exits at once (killed mid-stream);
- ``stall``: streams one token, then sends nothing more (a read timeout on the client);
- ``busy-once``: the first completion request gets 429 with ``Retry-After: 0``, later ones stream normally;
- ``malformed``: streams one token, then an event whose data is not JSON;
- ``reject``: every completion is a 400 with an OpenAI error body.

A normal stream sends three tokens (ids 5, 6, 7) and stops. ``GET /stats`` counts completion requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from tokenizers import Tokenizer

MODE, PORT, TOKENIZER = sys.argv[1], int(sys.argv[2]), Tokenizer.from_file(sys.argv[3])
TOKENS = [5, 6, 7]
STATS = {"completions": 0}


def chunk(token_id: int | None, finish: str | None = None) -> bytes:
    ids = [] if token_id is None else [token_id]
    choice = {
        "index": 0,
        "text": TOKENIZER.decode(ids),
        "token_ids": ids,
        "logprobs": {"tokens": [TOKENIZER.decode(ids)] if ids else [], "token_logprobs": [-0.5] * len(ids)},
        "finish_reason": finish,
    }
    return f"data: {json.dumps({'model': 'fault', 'choices': [choice]})}\n\n".encode()


async def health(request):
    return JSONResponse({"status": "ok"})


async def models(request):
    return JSONResponse({"object": "list", "data": [{"id": "fault", "object": "model", "max_model_len": 64}]})


async def stats(request):
    return JSONResponse(STATS)


async def completions(request):
    STATS["completions"] += 1
    if MODE == "reject":
        return JSONResponse({"error": {"message": "prompt is too long for fault", "type": "invalid"}}, 400)
    if MODE == "busy-once" and STATS["completions"] == 1:
        return JSONResponse({"error": {"message": "slow down"}}, 429, headers={"Retry-After": "0"})

    async def events():
        if MODE == "die":
            yield chunk(TOKENS[0])
            yield chunk(TOKENS[1])
            await asyncio.sleep(0.05)  # let the two chunks leave before the process goes
            os._exit(1)
        if MODE == "stall":
            yield chunk(TOKENS[0])
            await asyncio.Event().wait()  # never set: the client's read timeout ends it
        if MODE == "malformed":
            yield chunk(TOKENS[0])
            yield b"data: {this is not json\n\n"
            return
        for token in TOKENS:
            yield chunk(token)
        yield chunk(None, "length")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/stats", stats),
        Route("/v1/models", models),
        Route("/v1/completions", completions, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
