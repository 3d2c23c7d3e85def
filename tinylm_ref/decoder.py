"""Batch-1 decoding with the weights pre-arranged for the fewest, cheapest kernel calls.

At batch 1 a tiny decoder's step is a few dozen small matrix-vector products and twice as many
tiny element-wise ops, so per-call overhead and the bytes of weight streamed per token set the speed,
not the arithmetic. ``FastDecoder`` keeps the math of ``LLM.forward`` but spends fewer, cheaper calls:

- every matrix is prepared once per model (``make_projection``): packed into oneDNN's layout on CPU
  when it is large enough for that to pay, otherwise stored transposed and contiguous for ``torch.mm``;
- each RMSNorm's gain is folded into the matrix that follows it, and the attention scale into the
  query rows, so a norm costs one vector norm and one scalar (not five kernels);
- residual additions are fused into the output projections;
- the per-layer cache views are built once per generation, not once per step.

Folding and packing change rounding in the last bits only (tests hold the logits to the full forward
within float32 noise and the sampled tokens to ``LLM.decode_step``'s). Optionally the matrices are held in
bfloat16 (``--dtype bfloat16``): their inputs are rounded to bfloat16 and the products accumulate in
float32, while the residual stream, norms, attention, KV cache and logits stay float32. That halves the
bytes each token reads, which is what limits the 10m preset on a CPU whose last-level cache cannot hold
41 MB of float32 weights.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinylm_ref.fused_decoder import FusedDecoder, fused_decoder_for
from tinylm_ref.model import LLM, KVCache
from tinylm_ref.native import build_note, load_kernel, unavailable_reason

WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


#: float32 matrices at least this large (bytes) are packed for oneDNN; smaller ones stay dense. Measured on
#: the build machine (benchmarks/decode_speed.py): packing pays from ~1 MB, below that its per-call cost
#: is larger than what it saves (the 2.5m preset ran 17% slower with every matrix packed).
ONEDNN_MIN_BYTES = 1 << 20

Linear = Callable[[torch.Tensor], torch.Tensor]  # x (1, in) -> x @ W.T (1, out), float32
LinearAdd = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (residual, x) -> residual + x @ W.T


@dataclass(frozen=True)
class Projection:
    """One weight matrix, prepared once, with the two ways the decode step multiplies by it."""

    linear: Linear
    linear_add: LinearAdd
    kernel: str  # "onednn" (pre-packed, CPU) or "dense" (transposed contiguous, torch.mm)
    dtype: torch.dtype  # of the stored matrix


def onednn_available(device: torch.device) -> bool:
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported")
    )


def _onednn(weight: torch.Tensor, dtype: torch.dtype) -> Projection:
    """Packed once into oneDNN's blocked layout for one-row inputs, as ``torch.compile``'s CPU freezing
    packs linear layers; eagerly it skips the per-call weight handling that dominates a matrix-vector
    product (the 10m and 5m presets' products ran 1.5-1.7x faster in float32) and is what makes bfloat16
    pay off at all."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(dtype).contiguous(), 1)
    op, binary = torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._linear_pointwise.binary
    if dtype == torch.float32:
        return Projection(
            linear=lambda x: op(x, packed, None, "none", [], ""),
            linear_add=lambda residual, x: binary(x, residual, packed, None, "add"),
            kernel="onednn",
            dtype=dtype,
        )
    return Projection(
        linear=lambda x: op(x.to(dtype), packed, None, "none", [], "").float(),
        linear_add=lambda residual, x: residual + op(x.to(dtype), packed, None, "none", [], ""),
        kernel="onednn",
        dtype=dtype,
    )


def _dense(weight: torch.Tensor, dtype: torch.dtype) -> Projection:
    """Transposed and contiguous (``x @ Wt``), which MKL runs 10-25% faster than ``F.linear``'s view."""
    wt = weight.t().contiguous().to(dtype)
    if dtype == torch.float32:
        return Projection(
            linear=lambda x: torch.mm(x, wt),
            linear_add=lambda residual, x: torch.addmm(residual, x, wt),
            kernel="dense",
            dtype=dtype,
        )
    return Projection(
        linear=lambda x: torch.mm(x.to(dtype), wt).float(),
        linear_add=lambda residual, x: residual + torch.mm(x.to(dtype), wt),
        kernel="dense",
        dtype=dtype,
    )


def make_projection(weight: torch.Tensor, dtype: torch.dtype, device: torch.device) -> Projection:
    """``weight`` is float32 (out, in) with any gain folded in. The kernel depends only on the device,
    the torch build and CPU, the dtype and the matrix's size, never on timings, so a seed gives the same
    tokens every run."""
    if not onednn_available(device):
        return _dense(weight, dtype)
    if dtype == torch.float32:
        return _onednn(weight, dtype) if weight.numel() * 4 >= ONEDNN_MIN_BYTES else _dense(weight, dtype)
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return _dense(weight, dtype)  # a CPU without native bf16: oneDNN would emulate it (slow) or refuse
    return _onednn(weight, dtype)


@dataclass(frozen=True)
class _Layer:
    qkv: Projection  # attn-norm gain folded into its input columns, attention scale into the q rows
    proj: Projection
    gate_up: Projection  # ffn-norm gain folded into its input columns
    down: Projection


def _norm_eps(norm: torch.nn.RMSNorm) -> float:
    """``nn.RMSNorm(eps=None)`` uses the float32 machine epsilon, so the folded norm must too."""
    return float(norm.eps) if norm.eps is not None else float(torch.finfo(torch.float32).eps)


class FastDecoder:
    """One decode step for a batch of one sequence, reading and extending a ``KVCache``."""

    def __init__(self, model: LLM, weight_dtype: torch.dtype = torch.float32) -> None:
        cfg = model.config
        device = model.tok_emb.weight.device
        self.dim, self.heads, self.head_dim, self.ffn_dim = cfg.dim, cfg.n_heads, cfg.head_dim, cfg.ffn_dim
        self.weight_dtype = weight_dtype
        self.host_scalars = device.type == "cpu"  # a .item() per norm is free only on CPU
        self.max_seq_len = cfg.max_seq_len
        # (attention norm eps, FFN norm eps) per layer, then the final norm's
        self.eps = [(_norm_eps(b.attn_norm), _norm_eps(b.ffn_norm)) for b in model.blocks]
        self.final_eps = _norm_eps(model.norm)

        def arrange(weight: torch.Tensor, gain: torch.Tensor | None = None, dtype: torch.dtype = weight_dtype):
            w = weight.detach().float()
            if gain is not None:
                w = w * gain.detach().float()[None, :]
            return make_projection(w, dtype, device)

        with torch.no_grad():
            self.layers = []
            for block in model.blocks:
                qkv = block.attn.qkv.weight.detach().float().clone()
                qkv[: cfg.dim] *= cfg.head_dim**-0.5
                self.layers.append(
                    _Layer(
                        qkv=arrange(qkv, block.attn_norm.weight),
                        proj=arrange(block.attn.proj.weight),
                        gate_up=arrange(block.ffn.gate_up.weight, block.ffn_norm.weight),
                        down=arrange(block.ffn.down.weight),
                    )
                )
            # The head stays float32 in every mode: bf16 logits would tie (half of 10m's 2,000 logits
            # collapse onto shared values), which changes greedy and top-k picks; it is 7% of 10m's bytes.
            self.head = arrange(model.head.weight, model.norm.weight, torch.float32)
            self.tok_emb = model.tok_emb.weight.detach().float()
            self.pos_emb = model.pos_emb.weight.detach().float()

    def _inv_rms(self, x: torch.Tensor, eps: float) -> float | torch.Tensor:
        """1 / RMS(x) for a (1, C) row: a Python float on CPU (cheapest), a 0-d tensor elsewhere (no sync)."""
        norm = torch.linalg.vector_norm(x)
        if self.host_scalars:
            n = float(norm)
            return 1.0 / math.sqrt(n * n / self.dim + eps)
        return norm.square().div_(self.dim).add_(eps).rsqrt_()

    def layer_views(self, cache: KVCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (keys, values) views (H, S, D) of row 0 of ``cache``; build once per generation."""
        if cache.k.shape[1] != 1:
            raise ValueError(f"FastDecoder decodes one sequence; the cache holds {cache.k.shape[1]}")
        return [(cache.k[layer, 0], cache.v[layer, 0]) for layer in range(len(self.layers))]

    def step(self, token_id: int, pos: int, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Logits (1, V) after feeding ``token_id`` at position ``pos``; writes cache slot ``pos``.

        The caller owns ``cache.length`` (``sampling.generate`` advances it), so a step never
        half-updates the cache bookkeeping if it raises.
        """
        if pos >= self.max_seq_len:
            raise ValueError(f"sequence of {pos + 1} tokens exceeds the context of {self.max_seq_len}")
        C, H, D, Fd = self.dim, self.heads, self.head_dim, self.ffn_dim
        x = (self.tok_emb[token_id] + self.pos_emb[pos]).view(1, C)
        end = pos + 1
        for layer, (keys, values), (attn_eps, ffn_eps) in zip(self.layers, kv, self.eps, strict=True):
            q, k, v = layer.qkv.linear(x).mul_(self._inv_rms(x, attn_eps)).view(3, H, D).unbind(0)
            keys[:, pos] = k
            values[:, pos] = v
            scores = torch.bmm(q.unsqueeze(1), keys[:, :end].transpose(1, 2))  # (H, 1, end), q pre-scaled
            y = torch.bmm(torch.softmax(scores, dim=-1), values[:, :end]).view(1, C)
            x = layer.proj.linear_add(x, y)
            gate_up = layer.gate_up.linear(x).mul_(self._inv_rms(x, ffn_eps))
            x = layer.down.linear_add(x, F.silu(gate_up[:, :Fd]).mul_(gate_up[:, Fd:]))
        return self.head.linear(x).mul_(self._inv_rms(x, self.final_eps))


#: per model: {weight dtype (FastDecoder) or ("fused", weight dtype): (parameter key, decoder)}
_DECODERS: weakref.WeakKeyDictionary[LLM, dict] = weakref.WeakKeyDictionary()


def supports(model: LLM) -> bool:
    """FastDecoder computes in float32 around a float32 cache; a model cast to another dtype keeps using
    ``LLM.decode_step``."""
    return model.tok_emb.weight.dtype == torch.float32


_MODULES: weakref.WeakKeyDictionary[LLM, tuple[torch.nn.Module, ...]] = weakref.WeakKeyDictionary()


def _parameter_key(model: LLM) -> tuple:
    """Identity, storage, dtype, device and version of every parameter. Runs once per generation, so it reads
    each module's own parameter dict (walking ``model.parameters()`` cost ~0.1 ms per sample); the module
    list is taken once per model, which sees a replaced parameter but not a replaced submodule (call
    ``forget(model)`` after swapping one)."""
    modules = _MODULES.get(model)
    if modules is None:
        modules = _MODULES[model] = tuple(model.modules())
    return tuple(
        (id(p), p.data_ptr(), p.dtype, p.device, -1 if p.is_inference() else p._version)
        for module in modules
        for p in module._parameters.values()
        if p is not None
    )


def fast_decoder(model: LLM, weight_dtype: torch.dtype = torch.float32) -> FastDecoder:
    """The model's ``FastDecoder`` for ``weight_dtype``, rebuilt when a parameter was replaced, moved or
    cast, or changed in place through autograd-visible ops (``Tensor._version``: optimizer steps,
    ``load_state_dict``, ``param.mul_()`` under ``no_grad``).

    Not seen: writes through ``param.data`` (it has its own version counter) and in-place writes to
    parameters that are inference tensors (they keep none); after such a write, call ``forget(model)``.
    Building one copies every weight once (milliseconds), which a suite pays per model, not per sample.
    """
    key = _parameter_key(model)
    per_dtype = _DECODERS.setdefault(model, {})
    cached = per_dtype.get(weight_dtype)
    if cached is not None and cached[0] == key:
        return cached[1]
    decoder = FastDecoder(model, weight_dtype)
    per_dtype[weight_dtype] = (key, decoder)
    return decoder


def step_decoder(
    model: LLM, weight_dtype: torch.dtype = torch.float32, fused: bool = True
) -> FastDecoder | FusedDecoder:
    """The decoder ``sampling.generate`` uses: the compiled ``FusedDecoder`` (matrices in ``weight_dtype``) for a
    float32 model on CPU when its kernel is available (:mod:`tinylm_ref.native`) and ``fused``, else
    ``FastDecoder``. Cached and rebuilt like ``fast_decoder``."""
    on_cpu = model.tok_emb.weight.device.type == "cpu"
    if not fused or weight_dtype not in WEIGHT_DTYPES.values() or not on_cpu or load_kernel() is None:
        return fast_decoder(model, weight_dtype)
    key = _parameter_key(model)
    per_kind = _DECODERS.setdefault(model, {})
    cached = per_kind.get(("fused", weight_dtype))
    if cached is not None and cached[0] == key:
        return cached[1]
    decoder = fused_decoder_for(model, weight_dtype)
    if decoder is None:
        return fast_decoder(model, weight_dtype)
    per_kind[("fused", weight_dtype)] = (key, decoder)
    return decoder


def decode_kernel(model: LLM, weight_dtype: torch.dtype = torch.float32) -> dict[str, str | None]:
    """What ``step_decoder`` runs for this model, for the run record: ``{"kernel", "reason"}``, where
    ``kernel`` is ``fused`` (compiled step), ``eager`` (``FastDecoder``) or ``module`` (``LLM.decode_step``,
    for weights cast away from float32) and ``reason`` says why the fused step is not used (or, for a fused
    step built without OpenMP, that it runs on one thread)."""
    if not supports(model):
        return {"kernel": "module", "reason": f"weights are {str(model.tok_emb.weight.dtype).removeprefix('torch.')}"}
    if model.tok_emb.weight.device.type != "cpu":
        return {"kernel": "eager", "reason": f"the fused step is CPU only (device {model.tok_emb.weight.device})"}
    if load_kernel() is None:
        return {"kernel": "eager", "reason": unavailable_reason()}
    return {"kernel": "fused", "reason": build_note()}


def forget(model: LLM) -> None:
    """Drop the model's cached decoders (after weight writes ``fast_decoder`` cannot see, or a swapped
    submodule)."""
    _DECODERS.pop(model, None)
    _MODULES.pop(model, None)
