"""How far a regenerated number may move: the mode, the noise units (the suite's measured
spreads, a floor, the checkpoint's noise) and the report that counts every move."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd

from lpe.tools.checkpoint_noise import Units

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


PLUS_MINUS = ("±", r"$\pm$", r"\pm")


def resolution(token: str) -> float:
    """One unit of the last printed digit of a number as written ("0.2990" -> 1e-4)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


@dataclass
class Report:
    mode: str = "exact"
    units: float = 3.0  # noise mode: allowed drift in noise units
    floor_rel: float = 0.005  # noise mode: relative floor of a noise unit
    problems: list[str] = field(default_factory=list)
    numbers: int = 0
    max_drift: float = 0.0  # largest |a - b| / max(|reference|, 1e-12) seen
    beyond: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0, 3: 0})
    measured: int = 0  # noise mode: numbers whose unit came from a measured spread
    checkpoint: Units = field(default_factory=lambda: Units({}))  # noise mode: see Units
    verdicts_moved: list[str] = field(default_factory=list)  # noise mode: within noise
    # noise mode: a few numbers may move by up to tail_units (not beyond): see settle_tail
    tail_units: float = 6.0
    tail_share: float = 0.0003
    tail: list[str] = field(default_factory=list)
    timings: int = 0  # measured times seen (present, not compared)

    def timing(self, where: str, ref, act) -> None:
        """A measured time: where the reference has one, the regeneration must too (finite,
        >= 0); the values are not compared (see the module docstring)."""
        self.timings += 1
        missing = [pd.isna(v) or not math.isfinite(float(v)) for v in (ref, act)]
        if missing[0] != missing[1] or (not missing[1] and float(act) < 0):
            self.problems.append(f"{where}: a measured time {ref} became {act}")

    def number(
        self,
        where: str,
        ref: float,
        act: float,
        spread=None,
        resolution=0.0,
        *,
        count=False,
        checkpoint=0.0,
    ) -> None:
        """Judge one number; ``spread`` is its measured noise (None or NaN: none measured),
        ``checkpoint`` its checkpoint's (``lpe.tools.checkpoint_noise``; 0: none measured).

        A ``count`` (an integer column: parameters, bits, passes, members) must be equal in
        either mode: no floating-point path changes it."""
        self.numbers += 1
        drift = abs(act - ref)
        if drift:
            self.max_drift = max(self.max_drift, drift / max(abs(ref), 1e-12))
        if self.mode == "exact" or count:
            if drift:
                self.problems.append(
                    f"{where}: reference {ref:g}, regenerated {act:g} (moved by {act - ref:+.3g};"
                    + (
                        " a count, equal in any mode)"
                        if count
                        else " exact mode: see --mode noise"
                        " for another CPU family or other versions)"
                    )
                )
            return
        has_spread = spread is not None and not math.isnan(spread)
        self.measured += has_spread
        unit = max(
            spread if has_spread else 0.0, checkpoint, self.floor_rel * abs(ref) + resolution
        )
        moved = drift / unit if unit > 0 else (math.inf if drift else 0.0)
        for k in self.beyond:
            self.beyond[k] += moved > k
        if moved > self.units:
            sources = [f"measured spread {spread:.3g}"] if has_spread else []
            sources += [f"checkpoint {checkpoint:.3g}"] if checkpoint > 0 else []
            source = ", ".join(sources) or "floor only"
            text = (
                f"{where}: reference {ref:g}, regenerated {act:g} (moved by {act - ref:+.3g} = "
                f"{moved:.1f} noise units; unit {unit:.3g}, {source})"
            )
            (self.tail if moved <= self.tail_units else self.problems).append(text)

    def settle_tail(self) -> None:
        """Noise mode: the numbers that moved by more than ``units`` but at most ``tail_units``
        pass when they are at most ``tail_share`` of all numbers compared, else all fail.

        Why a tail: a checkpoint unit is an sd measured over three trained models (two degrees
        of freedom), which can fall well short of the true spread, and a tree holds tens of
        thousands of numbers. Measured on native-numerics regenerations (docs/reproducibility.md):
        6 of 27,355 numbers between 3 and 3.4 units (the reference at 9082677, another CPU) and 6
        of 42,747 between 3 and 4.3 (the reference at 284506c, the same CPU): 0.01-0.02%, so the
        default share, 0.03%, allows about twice that. A biased rounding planted in the scores
        (every LPE-BSR ensemble as far above RTN as it was below) put 31 of 42,747 there (0.07%),
        which the 0.1% share of before let pass. A change of the maths moves many numbers, or some
        far: the planted changes of
        tests/tools/test_compare.py fail either way."""
        allowed = int(self.tail_share * self.numbers)
        if len(self.tail) > allowed:
            self.problems.append(
                f"{len(self.tail)} numbers moved by {self.units:g} to {self.tail_units:g} noise "
                f"units, more than the {allowed} allowed ({self.tail_share:g} of "
                f"{self.numbers}):"
            )
            self.problems += self.tail
            self.tail = []
