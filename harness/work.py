"""Which samples a run makes and with what seed: a pure function of the suite, never of order.

Every sample's generator is seeded from (suite seed, prompt id, sample index) alone, so a sample is
the same whatever the order, a resume, the batch, a shard split, or which other models ran.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from harness.errors import UserError


def derive_seed(suite_seed: int, prompt_id: str, sample_index: int) -> int:
    """A 63-bit seed that depends only on its inputs (not on order, batch or resume)."""
    digest = hashlib.sha256(f"{suite_seed}:{prompt_id}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise UserError(f"--shard {text!r}: expected K/N with integers, e.g. 1/4") from None
        if not 1 <= k <= n:
            raise UserError(f"--shard {text!r}: K must be between 1 and N")
        return cls(k, n)

    def owns(self, model: str, prompt_id: str, sample_index: int) -> bool:
        digest = hashlib.sha256(f"{model}\x00{prompt_id}\x00{sample_index}".encode()).digest()
        return int.from_bytes(digest[:8], "little") % self.count == self.index - 1
