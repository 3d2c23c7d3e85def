"""The default CPU decode step: the whole step in one call to the compiled kernel (``csrc/fused_step.c``).

``FastDecoder`` spends most of a small preset's token outside the matrix products: each of its ~20 ops per
layer is a separate dispatch from Python. ``FusedDecoder`` does the same math (gains folded into the next
matrix, the attention scale into the query rows, residual adds fused) in one C call per token, with the
matrices in a panel layout its kernel streams forwards. It reads and writes the same ``KVCache`` as
``LLM.forward``, so the prompt's prefill stays in PyTorch and the decode continues from its cache.

Its float32 logits differ from ``LLM.forward``'s in float32 rounding only (tests hold them to 1e-5
relative); the order of each sum is fixed, so they do not change with the thread count. With
``weight_dtype=torch.bfloat16`` the layer matrices are held in bf16 and their inputs rounded to bf16, as
``FastDecoder``'s bf16 mode does (products accumulate in float32; the head, norms, attention, cache and
logits stay float32).
"""

from __future__ import annotations

import ctypes
import math
import os
import weakref

import torch

from tinylm_ref.model import LLM, KVCache
from tinylm_ref.native import load_kernel

PANEL = 64  # must match csrc/fused_step.c
HALF = PANEL // 2

_Pointers = ctypes.POINTER(ctypes.c_void_p)


class _TlModel(ctypes.Structure):
    """Mirror of ``TlModel`` in csrc/fused_step.c (field order and types must match)."""

    _fields_ = [
        *((name, ctypes.c_int32) for name in ("dim", "n_layers", "n_heads", "head_dim", "ffn_dim", "vocab")),
        ("max_threads", ctypes.c_int32),
        ("bf16", ctypes.c_int32),
        ("tok_emb", ctypes.c_void_p),
        ("pos_emb", ctypes.c_void_p),
        ("qkv", _Pointers),
        ("proj", _Pointers),
        ("gate_up", _Pointers),
        ("down", _Pointers),
        ("head", ctypes.c_void_p),
        ("attn_eps", ctypes.POINTER(ctypes.c_float)),
        ("ffn_eps", ctypes.POINTER(ctypes.c_float)),
        ("final_eps", ctypes.c_float),
        *((name, ctypes.c_void_p) for name in ("x", "normed", "qkv_out", "attn_out", "act", "scores")),
    ]


def panel_layout(weight: torch.Tensor) -> torch.Tensor:
    """(out, in) -> (panels, in, PANEL), zero rows padding ``out`` up to a multiple of PANEL."""
    out, n_in = weight.shape
    padded = torch.zeros(math.ceil(out / PANEL) * PANEL, n_in, dtype=torch.float32)
    padded[:out] = weight
    return padded.view(-1, PANEL, n_in).transpose(1, 2).contiguous()


def gate_up_layout(weight: torch.Tensor, ffn_dim: int) -> torch.Tensor:
    """(2 * ffn, in) with gate rows first -> panels of HALF gate rows followed by the HALF matching up rows."""
    n_in = weight.shape[1]
    pairs = math.ceil(ffn_dim / HALF) * HALF
    gate = torch.zeros(pairs, n_in)
    up = torch.zeros(pairs, n_in)
    gate[:ffn_dim], up[:ffn_dim] = weight[:ffn_dim], weight[ffn_dim:]
    interleaved = torch.cat([gate.view(-1, HALF, n_in), up.view(-1, HALF, n_in)], dim=1)  # (pairs/HALF, PANEL, in)
    return interleaved.transpose(1, 2).contiguous()


def _eps(norm: torch.nn.RMSNorm) -> float:
    return float(norm.eps) if norm.eps is not None else float(torch.finfo(torch.float32).eps)


class FusedDecoder:
    """One decode step for a batch of one sequence, reading and extending a float32 ``KVCache`` on CPU."""

    kernel = "fused"

    def __init__(self, model: LLM, library: ctypes.CDLL, weight_dtype: torch.dtype = torch.float32) -> None:
        if weight_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"the fused step holds its matrices in float32 or bfloat16, not {weight_dtype}")
        cfg = model.config
        self.weight_dtype = weight_dtype
        self.max_seq_len = cfg.max_seq_len
        self.vocab = cfg.vocab_size
        self._step = library.tl_step
        self._step.restype = ctypes.c_int
        self._step.argtypes = [ctypes.c_void_p, *(ctypes.c_int32,) * 2, *(ctypes.c_void_p,) * 2, ctypes.c_int32]
        self._step.argtypes += [ctypes.c_void_p, ctypes.c_int32]
        self._prefill = library.tl_prefill
        self._prefill.restype = ctypes.c_int
        self._prefill.argtypes = [ctypes.c_void_p, ctypes.c_void_p, *(ctypes.c_int32,) * 2, *(ctypes.c_void_p,) * 2]
        self._prefill.argtypes += [ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p]
        self._work = torch.empty(0)
        self._work_row = 6 * cfg.dim + cfg.ffn_dim  # floats per prompt token (csrc/fused_step.c, tl_prefill)
        self._matvecs = library.tl_matvecs_only
        self._matvecs.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32]
        keep: list[torch.Tensor] = []  # every buffer the C struct points into lives as long as self

        def hold(tensor: torch.Tensor) -> int:
            tensor = tensor.detach().float().contiguous()
            keep.append(tensor)
            return tensor.data_ptr()

        matrices: list[torch.Tensor] = []  # streamed every token: they go into one huge-page arena below

        def hold_matrix(panels: torch.Tensor) -> int:
            """A layer matrix's panels in the weight dtype (bf16 travels as its raw 16-bit patterns); returns
            its index in ``matrices`` until the arena gives it an address."""
            if weight_dtype == torch.bfloat16:
                panels = panels.to(torch.bfloat16).contiguous().view(torch.int16)
            matrices.append(panels.contiguous())
            return len(matrices) - 1

        def folded(weight: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
            w = weight.detach().float().clone()
            return w if gain is None else w * gain.detach().float()[None, :]

        with torch.no_grad():
            qkv, proj, gate_up, down = [], [], [], []
            for block in model.blocks:
                w = folded(block.attn.qkv.weight, block.attn_norm.weight)
                w[: cfg.dim] *= cfg.head_dim**-0.5
                qkv.append(hold_matrix(panel_layout(w)))
                proj.append(hold_matrix(panel_layout(folded(block.attn.proj.weight, None))))
                gate_up_w = folded(block.ffn.gate_up.weight, block.ffn_norm.weight)
                gate_up.append(hold_matrix(gate_up_layout(gate_up_w, cfg.ffn_dim)))
                down.append(hold_matrix(panel_layout(folded(block.ffn.down.weight, None))))
            matrices.append(panel_layout(folded(model.head.weight, model.norm.weight)))
            tok_emb, pos_emb = hold(model.tok_emb.weight), hold(model.pos_emb.weight)
        addresses = self._place(library, matrices, keep)
        qkv, proj, gate_up, down = ([addresses[i] for i in indices] for indices in (qkv, proj, gate_up, down))
        head = addresses[-1]

        def pointers(values: list[int]):
            return (ctypes.c_void_p * len(values))(*values)

        def floats(values: list[float]):
            return (ctypes.c_float * len(values))(*values)

        self.max_threads = max(1, torch.get_num_threads(), os.cpu_count() or 1)
        self._arrays = [pointers(qkv), pointers(proj), pointers(gate_up), pointers(down)]
        self._arrays += [
            floats([_eps(b.attn_norm) for b in model.blocks]),
            floats([_eps(b.ffn_norm) for b in model.blocks]),
        ]
        scratch = {
            "x": hold(torch.zeros(cfg.dim)),
            "normed": hold(torch.zeros(self.max_threads, cfg.dim)),
            "qkv_out": hold(torch.zeros(math.ceil(3 * cfg.dim / PANEL) * PANEL)),
            "attn_out": hold(torch.zeros(cfg.dim)),
            "act": hold(torch.zeros(math.ceil(cfg.ffn_dim / HALF) * HALF)),
        }
        self._scores: torch.Tensor | None = None
        self._caches: list[KVCache] = []
        self._keep = keep
        self._struct = _TlModel(
            dim=cfg.dim,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            head_dim=cfg.head_dim,
            ffn_dim=cfg.ffn_dim,
            vocab=cfg.vocab_size,
            max_threads=self.max_threads,
            bf16=int(weight_dtype == torch.bfloat16),
            tok_emb=tok_emb,
            pos_emb=pos_emb,
            qkv=ctypes.cast(self._arrays[0], _Pointers),
            proj=ctypes.cast(self._arrays[1], _Pointers),
            gate_up=ctypes.cast(self._arrays[2], _Pointers),
            down=ctypes.cast(self._arrays[3], _Pointers),
            head=head,
            attn_eps=self._arrays[4],
            ffn_eps=self._arrays[5],
            final_eps=_eps(model.norm),
            **scratch,
            scores=None,
        )
        self._address = ctypes.addressof(self._struct)
        self._logits = torch.zeros(1, math.ceil(cfg.vocab_size / PANEL) * PANEL)

    def _place(self, library: ctypes.CDLL, matrices: list[torch.Tensor], keep: list[torch.Tensor]) -> list[int]:
        """Copy the matrices into one arena from ``tl_alloc`` (2 MiB aligned, transparent huge pages on Linux):
        with 4 KiB pages the 10m preset's 41 MB per token cost a TLB walk every 4 KiB and its speed varied 2x
        between processes. Falls back to ordinary tensors if the arena cannot be had."""
        offsets, total = [], 0
        self.matrix_bytes = sum(matrix.numel() * matrix.element_size() for matrix in matrices)
        for matrix in matrices:
            total = -(-total // 64) * 64  # every matrix 64-byte aligned, as the kernel's vector loads need
            offsets.append(total)
            total += matrix.numel() * matrix.element_size()
        library.tl_alloc.restype = ctypes.c_void_p
        library.tl_alloc.argtypes = [ctypes.c_size_t]
        library.tl_free.argtypes = [ctypes.c_void_p]
        address = library.tl_alloc(total)
        if not address:
            keep.extend(matrices)
            return [matrix.data_ptr() for matrix in matrices]
        weakref.finalize(self, library.tl_free, address)
        arena = torch.frombuffer((ctypes.c_char * total).from_address(address), dtype=torch.uint8)
        for matrix, offset in zip(matrices, offsets, strict=True):
            nbytes = matrix.numel() * matrix.element_size()
            arena[offset : offset + nbytes].copy_(matrix.view(torch.uint8).reshape(-1))
        return [address + offset for offset in offsets]

    def take_cache(self, model: LLM) -> KVCache:
        """An empty batch-1 cache for one generation, reused across generations (return it with
        :meth:`give_back`). Slots are not zeroed: every read covers only positions already written. Reuse saves
        allocating and faulting in 2 x layers x 256 x dim floats per sample; concurrent generations each
        get their own (``list.pop``/``append`` are atomic)."""
        try:
            cache = self._caches.pop()
        except IndexError:
            cache = model.new_cache(1)
        cache.length = 0
        return cache

    def give_back(self, cache: KVCache) -> None:
        if len(self._caches) < 4:
            self._caches.append(cache)

    def layer_views(self, cache: KVCache) -> KVCache:
        """Checks ``cache`` is one float32 CPU sequence the kernel can address; build once per generation."""
        if cache.k.shape[1] != 1:
            raise ValueError(f"FusedDecoder decodes one sequence; the cache holds {cache.k.shape[1]}")
        for tensor in (cache.k, cache.v):
            if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or not tensor.is_contiguous():
                raise ValueError("FusedDecoder needs a contiguous float32 CPU cache")
        capacity = cache.capacity
        if self._scores is None or self._scores.numel() < self._struct.n_heads * capacity:
            self._scores = torch.zeros(self._struct.n_heads * capacity)
            self._struct.scores = self._scores.data_ptr()
        return cache

    def step(self, token_id: int, pos: int, cache: KVCache) -> torch.Tensor:
        """Logits (1, V) after feeding ``token_id`` at ``pos``; writes cache slot ``pos`` of every layer.

        The returned tensor is a view of a buffer the next step overwrites: read it (sample) before the
        next call, or clone it. The caller owns ``cache.length``, as with ``FastDecoder.step``.
        """
        if pos >= self.max_seq_len:
            raise ValueError(f"sequence of {pos + 1} tokens exceeds the context of {self.max_seq_len}")
        status = self._step(
            self._address,
            token_id,
            pos,
            cache.k.data_ptr(),
            cache.v.data_ptr(),
            cache.capacity,
            self._logits.data_ptr(),
            torch.get_num_threads(),
        )
        if status != 0:
            raise ValueError(f"token {token_id} at position {pos} is outside the vocabulary or the cache")
        return self._logits[:, : self.vocab]

    @property
    def prefills(self) -> bool:
        """Whether :meth:`prefill` runs the prompt here: float32 only, since ``--dtype bfloat16`` keeps a
        float32 prefill (its first token is the float32 one) and this decoder then holds bf16 matrices."""
        return self.weight_dtype == torch.float32

    def prefill(self, prompt_ids: list[int], cache: KVCache) -> torch.Tensor:
        """The prompt through every layer in one call (matrix-matrix products: each weight is read from
        memory once for the whole prompt); writes its cache slots from ``cache.length`` on and advances it.
        Returns the last position's logits (1, V), a view the next call overwrites."""
        n, start = len(prompt_ids), cache.length
        if not self.prefills:
            raise ValueError("the fused prefill runs float32 matrices; this decoder holds bfloat16 ones")
        if n == 0 or start + n > self.max_seq_len:
            raise ValueError(f"sequence of {start + n} tokens exceeds the context of {self.max_seq_len}")
        if self._work.numel() < n * self._work_row:
            self._work = torch.empty(self.max_seq_len * self._work_row)
        tokens = (ctypes.c_int32 * n)(*prompt_ids)
        self.layer_views(cache)
        status = self._prefill(
            self._address,
            ctypes.addressof(tokens),
            n,
            start,
            cache.k.data_ptr(),
            cache.v.data_ptr(),
            cache.capacity,
            self._logits.data_ptr(),
            torch.get_num_threads(),
            self._work.data_ptr(),
        )
        if status != 0:
            raise ValueError(f"prompt of {n} tokens from position {start}: a token is outside the vocabulary")
        cache.length = start + n
        return self._logits[:, : self.vocab]

    def matvecs_only(self) -> None:
        """One step's matrix-vector products alone, same panels and threads (the benchmark's floor)."""
        self._matvecs(self._address, self._logits.data_ptr(), torch.get_num_threads())


def fused_decoder_for(model: LLM, weight_dtype: torch.dtype = torch.float32) -> FusedDecoder | None:
    """A ``FusedDecoder`` for a float32 CPU model when the kernel is available, else ``None``."""
    param = model.tok_emb.weight
    if param.device.type != "cpu" or param.dtype != torch.float32:
        return None
    library = load_kernel()
    return None if library is None else FusedDecoder(model, library, weight_dtype)
