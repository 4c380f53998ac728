"""``lpe-bsr`` as a baseline of Table 6: LPE-BSR members at INT-b, the candidates being INT-b
formats (``baselines.formats``), taken as their widths b; member k is the generate stage's member
k of the same seed (``member_seed(seed, k)``, per-channel scales), stored as its codes, scales and
kept tensors. The rounding is ``lpe.formats.rounding``'s, the members ``lpe.members``'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from lpe.evaluation.baselines import Baseline
from lpe.evaluation.spine import member_weights
from lpe.formats.names import MAX_BITS, MIN_BITS
from lpe.formats.number_formats import int_format
from lpe.formats.policy import QuantPolicy
from lpe.members.files import quantize
from lpe.methods import Spec


def bits_problem(candidates: Sequence[float]) -> str | None:
    if all(float(b).is_integer() and MIN_BITS <= b <= MAX_BITS for b in candidates):
        return None
    return (
        f"baselines.formats must be INT-b formats, int{MIN_BITS}..int{MAX_BITS}, got widths "
        f"{list(candidates)}"
    )


@contextlib.contextmanager
def bsr_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    """The generate stage's member of this seed, run as every stage runs it."""
    yield member_weights(model, quantize(state, int_format(int(setting)), "bsr", seed, policy))


def rounded_bits(model, state, setting: float, members: int) -> list[int]:
    """An LPE-BSR member's codes, scales and kept tensors (an RTN member has its layout)."""
    return [quantize(state, int_format(int(setting)), "rtn").bits] * members


SPEC = Spec(
    "lpe-bsr",
    baseline=Baseline(
        row="LPE-BSR",
        setting="precision INT-",
        chosen="LPE-BSR INT-{:g}",
        problem=bits_problem,
        member=bsr_member,
        storage=rounded_bits,
        rounded=True,
    ),
)
