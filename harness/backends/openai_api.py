"""The ``openai`` backend: a model behind any server that speaks the OpenAI completions API with streaming.

Spec: ``openai:URL#MODEL`` (``URL`` is the API root, ending in ``/v1``; ``#MODEL`` may be left out when the
server serves one model), e.g. ``openai:http://127.0.0.1:8000/v1#2.5m``. See docs/serving.md.

Timing is taken where the client sees it: ``start_ns`` just before the request is sent, each token's time
when the streamed chunk that carried it arrived (all tokens of one chunk share its time), so TTFT includes
the network and the server's queue. Token ids come from the server (``token_ids`` in each chunk, as
``harness serve`` and vLLM send with ``return_token_ids``); a server that sends only text has its text
tokenized again here, recorded as such in the manifest. Log-probabilities are requested (``logprobs``) and
used only where the server gives one per token; otherwise they are NaN, so perplexity is missing, never
wrong. The per-sample seed the runner derives is sent as ``seed``: ``harness serve`` honours it, so a
seeded sample through it equals the direct backend's.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any
from urllib.parse import urlsplit

from harness.backends.openai_client import Client, ClientSettings, import_httpx
from harness.errors import UserError
from harness.hookspecs import hookimpl
from harness.types import Generation, LoadOptions, ModelInfo, SampleFailed, SamplingParams
from harness.validation import parse_int

PREFIX = "openai:"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
UNKNOWN_CONTEXT = 2**31 - 1  # a server that does not say: the server itself refuses a prompt too long


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``openai:URL#MODEL`` -> (URL, MODEL or None), refusing what cannot be a server address."""
    target = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    url, _, model = target.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(
            f"model {spec}: expected openai:URL#MODEL with an http(s) URL, e.g. openai:http://127.0.0.1:8000/v1#2.5m"
        )
    try:
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError:
        raise UserError(f"model {spec}: the port in {url!r} is not a number") from None
    return url.rstrip("/"), (model or None)


def _float_option(spec: str, options: LoadOptions, key: str, default: float) -> float:
    raw = options.extra.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"model {spec}: --model-option {key}={raw!r}: expected a positive number of seconds")
    return value


def client_settings(spec: str, options: LoadOptions) -> ClientSettings:
    key_env = options.extra.get("api_key_env", DEFAULT_KEY_ENV)
    return ClientSettings(
        connect_timeout_s=_float_option(spec, options, "connect_timeout", 10.0),
        read_timeout_s=_float_option(spec, options, "read_timeout", 120.0),
        retries=parse_int(f"model {spec}: --model-option retries", options.extra.get("retries", 5), 0, 100),
        api_key=os.environ.get(key_env) or None,
    )


class Tokenizer:
    """Prompt text <-> ids for a served model: a local tokenizer file, else the server's tokenize endpoints."""

    def __init__(self, client: Client, model: str, path: str | None, root: str) -> None:
        self.client, self.model, self.local, self.kind = client, model, None, None
        self.root = root  # the server's root: vLLM and llama.cpp put their tokenize endpoints beside /v1
        self.bos: list[int] | None = None
        if path is not None:
            from tokenizers import Tokenizer as HFTokenizer

            try:
                self.local = HFTokenizer.from_file(path)
            except Exception as exc:  # the tokenizers library raises its own exception types
                raise UserError(f"--model-option tokenizer={path}: not a tokenizer.json file ({exc})") from None
            self.kind = f"file {path}"
            return
        if client.try_post_json(f"{self.root}/tokenize", {"model": model, "prompt": "a"}) is not None:
            self.kind = "server /tokenize"  # harness serve, vLLM
        elif client.try_post_json(f"{self.root}/extras/tokenize", {"model": model, "input": "a"}) is not None:
            self.kind = "server /extras/tokenize"  # llama-cpp-python
        else:
            raise UserError(
                f"model {client.label}: the server has no tokenize endpoint; "
                "pass the model's tokenizer with --model-option tokenizer=PATH/tokenizer.json"
            )

    def continuation_ids(self, text: str) -> list[int]:
        """Ids of generated text: ``encode`` without the BOS a tokenizer puts before a prompt."""
        if self.bos is None:
            self.bos = self.encode("")  # what the tokenizer adds to any text (BOS), learnt once
        ids = self.encode(text)
        return ids[len(self.bos) :] if self.bos and ids[: len(self.bos)] == self.bos else ids

    def encode(self, text: str) -> list[int]:
        if self.local is not None:
            return self.local.encode(text).ids
        if self.kind == "server /tokenize":
            return list(self.client.post_json(f"{self.root}/tokenize", {"model": self.model, "prompt": text})["tokens"])
        body = {"model": self.model, "input": text}
        return list(self.client.post_json(f"{self.root}/extras/tokenize", body)["tokens"])

    def decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        if self.local is not None:
            return self.local.decode(ids, skip_special_tokens=True)
        if self.kind == "server /tokenize":
            return self.client.post_json(f"{self.root}/detokenize", {"model": self.model, "tokens": ids})["prompt"]
        return self.client.post_json(f"{self.root}/extras/detokenize", {"model": self.model, "tokens": ids})["text"]


class StreamState:
    """What the chunks of one streamed completion said, gathered as they arrive."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.ids: list[int] | None = []  # None once a chunk carried text without ids
        self.logprobs: list[float] | None = []  # None once a chunk carried tokens without log-probs
        self.times: list[int] = []  # one per streamed token
        self.first_ns: int | None = None
        self.finish_reason: str | None = None
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.echo: dict[str, Any] = {}

    def add(self, now: int, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for key in ("model", "system_fingerprint", "sampling"):
            if chunk.get(key) is not None:
                self.echo[key] = chunk[key]
        choices = chunk.get("choices") or []
        if not choices:
            return
        choice = choices[0]
        text = choice.get("text") or ""
        ids = choice.get("token_ids")
        lp = choice.get("logprobs") or {}
        token_lps = lp.get("token_logprobs") if isinstance(lp, dict) else None
        count = len(ids) if ids is not None else len(token_lps) if token_lps is not None else (1 if text else 0)
        self.text.append(text)  # text may come without a token (a character held back until complete)
        if count:
            self.first_ns = self.first_ns or now
            self.times += [now] * count
            self.ids = None if ids is None or self.ids is None else self.ids + [int(i) for i in ids]
            if token_lps is None or self.logprobs is None or len(token_lps) != count:
                self.logprobs = None
            else:
                self.logprobs += [float("nan") if v is None else float(v) for v in token_lps]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
            self.first_ns = self.first_ns or now  # EOS first: the work timed is the same (docs/metrics.md)
        if choice.get("stop_reason") in ("eos", "max_new_tokens", "context", "nonfinite"):
            self.stop_reason = choice["stop_reason"]


class OpenAIModel:
    """A served model behind the harness Model contract; safe to call from several threads (load mode)."""

    def __init__(self, spec: str, options: LoadOptions) -> None:
        url, wanted = parse_spec(spec)
        self.client = Client(spec, url, client_settings(spec, options))
        try:
            self._connect(spec, url, wanted, options)
        except BaseException:
            self.client.close()
            raise

    def _connect(self, spec: str, url: str, wanted: str | None, options: LoadOptions) -> None:
        """Ask the server what it serves and how it tokenizes; refuse a model it does not serve."""
        models = self.client.get_json("models").get("data") or []
        ids = [m.get("id") for m in models if isinstance(m, dict)]
        if wanted is None and len(ids) != 1:
            raise UserError(f"model {spec}: the server serves {ids or 'no models'}; name one: openai:{url}#MODEL")
        if wanted is not None and wanted not in ids:
            raise UserError(f"model {spec}: the server serves {ids}, not {wanted!r}; use openai:{url}#ONE_OF_THEM")
        self.model_id = wanted or ids[0]
        entry = next(m for m in models if m.get("id") == self.model_id)
        facts = entry.get("harness") or {}  # harness serve describes the model it serves
        root = url.removesuffix("/v1")
        self.tokenizer = Tokenizer(self.client, self.model_id, options.extra.get("tokenizer"), root)
        self.eos_id = None  # the server stops at its own EOS and never sends it
        self.prompt_texts: dict[tuple[int, ...], str] = {}
        prompt = str(options.extra.get("prompt", "auto")).lower()  # llama-cpp-python takes text prompts only
        self.send_text = prompt == "text" or (prompt == "auto" and self.tokenizer.kind == "server /extras/tokenize")
        self.info = ModelInfo(
            name=spec,
            spec=spec,
            backend="openai",
            parameters=int(facts.get("parameters") or 0),
            vocab_size=int(facts.get("vocab_size") or 0),
            context_length=int(entry.get("max_model_len") or facts.get("context_length") or UNKNOWN_CONTEXT),
            device="remote",
            dtype=str(facts.get("dtype") or "unknown"),
            source=f"{url}#{self.model_id}",
            weights_sha256=facts.get("weights_sha256"),
            tokenizer_sha256=facts.get("tokenizer_sha256"),
            extra={
                "server": {
                    "url": url,
                    "model": self.model_id,
                    "served": facts or None,
                    "owned_by": entry.get("owned_by"),
                },
                "tokenizer": self.tokenizer.kind,
                "prompt_sent_as": "text" if self.send_text else "token ids",
            },
        )

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        self.prompt_texts[tuple(ids)] = text  # sent as text with --model-option prompt=text
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def request_body(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> dict[str, Any]:
        prompt: Any = self.prompt_texts.get(tuple(prompt_ids)) if self.send_text else None
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": prompt if prompt is not None else list(prompt_ids),
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "seed": seed,
            "stream": True,
            "logprobs": 1,
            "stream_options": {"include_usage": True},
            "return_token_ids": True,
            # the harness samples with temperature and top-k only: switch off what servers add by default
            # (llama-cpp-python: top_p 0.95, min_p 0.05, repeat_penalty 1.1; vLLM: repetition_penalty)
            "top_p": 1.0,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        if sampling.top_k is not None and sampling.temperature > 0:
            body["top_k"] = sampling.top_k
        return body

    def generate(self, prompt_ids: list[int], sampling: SamplingParams, generator: Any) -> Generation:
        """One streamed completion; the seed is the generator's (the runner seeds one per sample)."""
        body = self.request_body(prompt_ids, sampling, int(generator.initial_seed()))
        state = StreamState()
        start = time.perf_counter_ns()
        done = False
        with self.client.send("POST", "completions", body, stream=True) as response:
            for now, data in self.client.events(response):
                if data.strip() == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise SampleFailed(
                        f"malformed stream event after {len(state.times)} tokens: {data[:80]!r}"
                    ) from None
                if not isinstance(chunk, dict):
                    raise SampleFailed(f"malformed stream event: {data[:80]!r}")
                if chunk.get("error"):
                    raise SampleFailed(f"the server reported an error mid-stream: {chunk['error']}")
                state.add(now, chunk)
        if not done and state.finish_reason is None:
            raise SampleFailed(f"the stream ended after {len(state.times)} tokens without finishing")
        said = (state.usage or {}).get("completion_tokens")
        if isinstance(said, int) and said != len(state.times) and state.ids is not None:
            raise SampleFailed(f"the server's usage says {said} tokens but its stream carried {len(state.times)}")
        return self._generation(state, start, body["seed"])

    def _generation(self, state: StreamState, start: int, seed: int) -> Generation:
        out = Generation(start_ns=start, end_ns=time.perf_counter_ns() if not state.times else state.times[-1])
        out.first_token_ns = state.first_ns
        if state.ids is not None:
            out.tokens, source = state.ids, "server token ids"
        else:  # text only: tokenize it again (may split differently from the server's own tokens)
            out.tokens, source = self.tokenizer.continuation_ids("".join(state.text)), "re-tokenized text"
        exact = len(out.tokens) == len(state.times)
        out.token_times_ns = state.times if exact else _stretch(state.times, len(out.tokens), start)
        if exact and state.logprobs is not None:
            out.logprobs = state.logprobs
        else:  # missing, never wrong
            out.logprobs = [float("nan")] * len(out.tokens)
        out.end_ns = max(out.end_ns, *(out.token_times_ns or [start]))
        out.stop_reason = state.stop_reason or ("eos" if state.finish_reason == "stop" else "max_new_tokens")
        out.eos_hit = out.stop_reason == "eos"
        echoed = dict(state.echo)
        applied = dict(echoed.pop("sampling", None) or {})
        if "seed" in applied:  # the per-sample seed is in samples.jsonl; here: did the server apply the one sent
            self.info.extra["server"]["seed_echoed"] = applied.pop("seed") == seed and self.info.extra["server"].get(
                "seed_echoed", True
            )
        self.info.extra["server"]["echoed"] = {**echoed, "sampling": applied or None}
        self.info.extra["token_ids"] = source
        self.info.extra["logprobs"] = "server" if exact and state.logprobs is not None else "missing"
        return out

    def peak_memory_mb(self) -> float | None:
        """The server's own peak memory where it reports one (``harness serve``'s ``/health``), else None."""
        try:
            value = self.client.get_json(f"{self.tokenizer.root}/health").get("peak_mem_mb")
        except Exception:  # optional: a server without it leaves the metric missing
            return None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def score(self, ids: list[int]) -> list[float]:
        raise NotImplementedError("the openai backend cannot score text (held-out metrics need a local backend)")

    def close(self) -> None:
        self.client.close()


def _stretch(times: list[int], n: int, start: int) -> list[int]:
    """Token times for ``n`` re-tokenized tokens from the streamed ones: the i-th takes the arrival of the
    streamed token at the same fraction of the stream (exact when the counts agree)."""
    if not times:
        return [start] * n
    return [times[min(len(times) - 1, (i * len(times)) // n)] for i in range(n)]


class OpenAIBackend:
    name = "openai"
    option_keys = ("tokenizer", "api_key_env", "connect_timeout", "read_timeout", "retries", "prompt")
    concurrent_requests = True  # harness.load may call generate from several threads

    def claims(self, spec: str) -> bool:
        return False  # only with the openai: prefix

    def check_options(self, spec: str, options: LoadOptions) -> None:
        """Spec syntax and option values, before a run directory exists (no request is sent here)."""
        parse_spec(spec)
        client_settings(spec, options)
        prompt = str(options.extra.get("prompt", "auto")).lower()
        if prompt not in ("auto", "ids", "text"):
            raise UserError(f"model {spec}: --model-option prompt={prompt!r}: use auto (default), ids or text")
        if options.batch_size > 1:
            raise UserError(f"model {spec}: --batch-size applies to local backends; use --concurrency for a server")
        import_httpx()

    def load(self, spec: str, options: LoadOptions) -> OpenAIModel:
        self.check_options(spec, options)
        return OpenAIModel(spec, options)

    def available(self) -> list[tuple[str, str]]:
        return [("openai:URL#MODEL", "a model behind an OpenAI-compatible server (harness serve, vLLM, llama.cpp)")]


@hookimpl
def register_backends(register) -> None:
    register(OpenAIBackend())
