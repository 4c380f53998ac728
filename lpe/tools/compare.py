"""The regeneration check: compare freshly generated results with the committed reference.

Every file under the reference folders must exist in the regenerated ones and vice versa, and
the text around the numbers (names, verdicts, check marks) must match exactly. Numbers are judged
in one of two modes:

- ``exact`` (the default; CI): every number equal. With the pinned CPU numerics
  (``lpe.core.numerics``) and the locked versions (``requirements.lock``) any x86-64 machine
  regenerates the reference exactly, so any drift is a change.
- ``noise`` (a CPU whose numerics fingerprint differs, ARM, other versions, native numerics):
  each number may move by up to ``--units`` (3) noise units. A number's noise unit is the spread
  the suite measured for it, or the floor, whichever is larger:

  * a ``scores.csv`` row: the sd over BSR seeds of the row's group (same model, precision,
    method, ensemble size, ...); a row without seeds (FP32, RTN) takes the median of its
    column's group sds in that file;
  * a table's ``<metric>_mean`` / ``<metric>_std``: the row's std (a row without one, the median
    of the column);
  * a number printed as ``mean ± sd`` (md) or ``mean $\\pm$ sd`` (tex): that sd, and other cells
    of the same table column the column's median sd;
  * the floor: ``--floor-rel`` (0.5%) of the reference value plus the printed resolution (one
    unit of the reference's last printed digit). 0.5% covers the drift of the FP32 test NLL that
    training on two CPU code paths gave (0.08% to 0.53% over the four mini models, 12 epochs).

  * the checkpoint's noise (``lpe.tools.checkpoint_noise.Units``), measured from the retrained
    models' scores (``train_noise``; ``--checkpoint-noise-from``), for every number downstream
    of a trained model.

  Verdict words may move: a check line may not go from "holds" to "fails" (or back) with its
  bands widened for the checkpoint; a claims report's verdicts only with its checks.
  The report counts the numbers that moved by more than 1, 2 and 3 noise units. A few numbers
  (``--tail-share``, 0.03%) may move by up to ``--tail-units`` (6): a checkpoint unit is an sd
  over a few trained models. Text lines are aligned by their words (numbers and verdicts set
  aside) before they are compared, so that the announcement of a failed convergence gate,
  present in one tree only, shifts no other line.

Measured times are not reproduced by any regeneration (another load, another machine): a CSV
column named ``infer_us*`` and a number printed before ``µs`` (``lpe.reports.tabulate.TIMING_UNIT``)
are checked in either mode only to be there, finite and non-negative where the reference has one.

Files: ``.csv`` cell by cell (a row is named by its text columns and ``seed``/``members``);
``.md``, ``.tex`` and other text token by token; ``.png``/``.pdf`` present, of the right kind and
(png) the same pixel size (pixels are not compared: font rendering differs between machines).

Usage: ``python -m lpe.tools.compare REFERENCE_ROOT ACTUAL_ROOT --paths results/mini figures/mini
[--mode noise]``
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lpe.core.selection import NOISE_SE
from lpe.reports.tabulate import TIMING_UNIT
from lpe.tools.checkpoint_noise import Units, measure, row_key

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
PLUS_MINUS = ("±", r"$\pm$", r"\pm")
ROW_KEYS = ("seed", "members")
MODES = ("exact", "noise")
# The words a verdict is written in (claims, checks, the convergence gate). In noise mode a check
# may move between "holds" or "fails" and "within noise" (another draw inside its band), never
# from "holds" to "fails" beyond the checkpoint's noise; the other words follow from the checks.
VERDICT = re.compile(
    r"\b(?:partially reproduced|not reproduced|reproduced|undecided \(within noise\)"
    r"|within noise|holds|fails|passes|FAILS|yes|no|NO)\b"
)
MARGIN = re.compile(r"margin ([-+]?\d+\.\d+) vs band ±(\d+\.\d+)")
# Measured wall times (lpe.stages.score's infer_us columns, numbers the tables print before
# lpe.reports.tabulate.TIMING_UNIT): present, not compared
TIMING_COLUMN = "infer_us"
# a line that announces a failed convergence gate (lpe.reports.claims): there only while a model
# fails it
GATE_LINE = re.compile(r"\bgate FAILED\b", re.IGNORECASE)
# the models such a line names ("gate FAILED for vit_mini_b, vit_mini_l**" or "...l: the claims")
GATE_MODELS = re.compile(r"(\bgate FAILED for )([\w.\-, ]+?)(\*\*|:)", re.IGNORECASE)


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
        tests/test_compare.py fail either way."""
        allowed = int(self.tail_share * self.numbers)
        if len(self.tail) > allowed:
            self.problems.append(
                f"{len(self.tail)} numbers moved by {self.units:g} to {self.tail_units:g} noise "
                f"units, more than the {allowed} allowed ({self.tail_share:g} of "
                f"{self.numbers}):"
            )
            self.problems += self.tail
            self.tail = []


def resolution(token: str) -> float:
    """One unit of the last printed digit of a number as written ("0.2990" -> 1e-4)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _text_tokens(text: str) -> list[str | float]:
    tokens: list[str | float] = []
    position = 0
    for match in NUMBER.finditer(text):
        tokens.append(" ".join(text[position : match.start()].split()))
        tokens.append(match.group())
        position = match.end()
    tokens.append(" ".join(text[position:].split()))
    return tokens


def _cells(line: str) -> list[str]:
    """The cells of a markdown (``|``) or LaTeX (``&``) table row; one cell for other lines."""
    if line.lstrip().startswith("|"):
        return line.strip().strip("|").split("|")
    if "&" in line:
        return line.split("&")
    return [line]


def _cell_spreads(cell: str) -> list[float | None]:
    """Per number of a cell: the sd printed after it or as it ("m ± s" gives s to both)."""
    numbers = NUMBER.findall(cell)
    if len(numbers) == 2 and any(pm in cell for pm in PLUS_MINUS):
        return [abs(float(numbers[1]))] * 2
    return [None] * len(numbers)


def text_spreads(text: str) -> list[list[float | None]]:
    """Per line, per number: its measured spread, from ``±`` or the median of its table column."""
    lines = [[_cell_spreads(c) for c in _cells(line)] for line in text.splitlines()]
    columns: dict[int, list[float]] = {}
    for cells in lines:
        if len(cells) > 1:
            for j, spreads in enumerate(cells):
                columns.setdefault(j, []).extend(s for s in spreads if s is not None)
    medians = {j: float(np.median(v)) for j, v in columns.items() if v}
    out = []
    for cells in lines:
        fill = len(cells) > 1
        out.append(
            [
                s if s is not None or not fill else medians.get(j)
                for j, spreads in enumerate(cells)
                for s in spreads
            ]
        )
    return out


def _judged(parts: list[tuple[float, float]], widen: float) -> str:
    """A check's outcome with every band widened by ``widen`` (as ``lpe.reports.claims.Check``)."""
    outcomes = {
        "holds" if m > b + widen else "fails" if m < -(b + widen) else "within noise"
        for m, b in parts
    }
    if "fails" in outcomes:
        return "fails"
    return "holds" if outcomes == {"holds"} else "within noise"


def _check_moved(where: str, ref_line: str, act_line: str, report: Report) -> bool | None:
    """A check line (``[margin m vs band b]``) whose verdict word moved (noise mode), judged
    again with its bands widened by NOISE_SE checkpoint units of a margin: it may not go from
    "holds" to "fails" or back. True: accepted, False: failed, None: not a check line."""
    ref_parts = [(float(m), float(b)) for m, b in MARGIN.findall(ref_line)]
    act_parts = [(float(m), float(b)) for m, b in MARGIN.findall(act_line)]
    if not ref_parts or len(ref_parts) != len(act_parts):
        return None
    widen = NOISE_SE * report.checkpoint.margin(report.checkpoint.models(ref_line))
    judged = {_judged(ref_parts, widen), _judged(act_parts, widen)}
    if judged == {"holds", "fails"}:
        report.problems.append(
            f"{where}: a check moved beyond noise ({_words(ref_line, act_line)}; with bands "
            f"widened by {widen:.3g} for the checkpoint it still holds in one and fails in the "
            f"other)\n    reference:   {ref_line}\n    regenerated: {act_line}"
        )
        return False
    report.verdicts_moved.append(
        f"{where}: {_words(ref_line, act_line)} (a check: within noise with its bands widened "
        f"by {widen:.3g} for the checkpoint)"
    )
    return True


def _words(ref_line: str, act_line: str) -> str:
    return f"{', '.join(VERDICT.findall(ref_line))} -> {', '.join(VERDICT.findall(act_line))}"


def _verdicts_moved(name, moved, checks_moved: int, report: Report) -> None:
    """Verdict words moved off check lines (noise mode). In a claims report they follow from
    its checks (a claim's verdict, its counts): they may move only where a check moved within
    noise. Elsewhere (the gate's yes/no, a tie) they follow from the numbers on their line,
    which are judged as numbers. Accepted moves are listed, not failed."""
    for where, ref_line, act_line in moved:
        if Path(name).name.startswith("claims") and not checks_moved:
            report.problems.append(
                f"{where}: a verdict moved ({_words(ref_line, act_line)}) while no check of the "
                f"report moved\n    reference:   {ref_line}\n    regenerated: {act_line}"
            )
        else:
            report.verdicts_moved.append(f"{where}: {_words(ref_line, act_line)}")


def _skeleton(line: str) -> str:
    """A line without its numbers and verdict words: what must match for two lines to pair."""
    return " ".join(VERDICT.sub("~", NUMBER.sub("#", line)).split())


def _paired_lines(name: str, ref: list[str], act: list[str], report: Report):
    """(reference line number, reference line, regenerated line) of the lines that correspond.

    Exact mode pairs lines by position. Noise mode aligns them by their skeletons first
    (difflib), so that a line that follows a verdict (the announcement that a model failed the
    convergence gate, which another checkpoint may pass) shifts no other line: such a line,
    and a blank one, present in one tree only is listed as a verdict that moved; any other line
    present in one tree only is a problem."""
    if report.mode != "noise":
        return [(n, a, b) for n, (a, b) in enumerate(zip(ref, act, strict=False), 1)]
    matcher = difflib.SequenceMatcher(
        None, [_skeleton(x) for x in ref], [_skeleton(x) for x in act], autojunk=False
    )
    pairs = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            pairs += [(i + 1, ref[i], act[i - i1 + j1]) for i in range(i1, i2)]
            continue
        for side, lines, first in (("reference", ref[i1:i2], i1), ("regenerated", act[j1:j2], j1)):
            for k, line in enumerate(lines, first + 1):
                where = f"{name} {side} line {k}: only in the {side}"
                if not line.strip() or GATE_LINE.search(line):
                    kind = "the gate's announcement" if line.strip() else "a blank line"
                    report.verdicts_moved.append(f"{where} ({kind}): {line}")
                else:
                    report.problems.append(f"{where}\n    {line}")
    return pairs


def _same_gate_line(ref_line: str, act_line: str) -> bool:
    """Two announcements of a failed convergence gate that differ only in the models named."""

    def unnamed(line: str) -> str:
        return GATE_MODELS.sub(r"\1~\3", line)

    return bool(GATE_MODELS.search(ref_line)) and unnamed(ref_line) == unnamed(act_line)


def compare_text(name: str, ref: str, act: str, report: Report) -> None:
    noise = report.mode == "noise"
    spreads = text_spreads(ref) if noise else None
    moved: list[tuple[str, str, str]] = []  # noise mode: verdict words moved off check lines
    checks_moved = 0
    for n, ref_line, act_line in _paired_lines(name, ref.splitlines(), act.splitlines(), report):
        if noise and ref_line != act_line and _same_gate_line(ref_line, act_line):
            # the gate's announcement in both trees, naming other models: which model a
            # borderline gate fails follows its numbers (the gate table, judged as numbers)
            report.verdicts_moved.append(f"{name} line {n} (the gate's announcement names other "
                                         f"models): {ref_line} -> {act_line}")  # fmt: skip
            continue
        a, b = _text_tokens(ref_line), _text_tokens(act_line)
        same_text = len(a) == len(b) and all(
            x == y for k, (x, y) in enumerate(zip(a, b, strict=True)) if k % 2 == 0
        )
        if not same_text and noise and len(a) == len(b):
            same_text = all(
                VERDICT.sub("~", x) == VERDICT.sub("~", y)
                for k, (x, y) in enumerate(zip(a, b, strict=True))
                if k % 2 == 0
            )
            if same_text:
                where = f"{name} line {n}"
                check = _check_moved(where, ref_line, act_line, report)
                if check is None:
                    moved.append((where, ref_line, act_line))
                checks_moved += bool(check)
        if not same_text:
            report.problems.append(
                f"{name} line {n}: text differs\n    reference:   "
                f"{ref_line}\n    regenerated: {act_line}"
            )
            continue
        line_spreads = spreads[n - 1] if spreads is not None else []
        models = report.checkpoint.models(ref_line) if noise else []
        for k in range(1, len(a), 2):
            i = k // 2
            if a[k + 1].startswith(TIMING_UNIT):
                report.timing(f"{name} line {n}, number {i + 1}", a[k], b[k])
                continue
            # an sd printed after its mean ("m ± s") moves at the scale of the mean's noise
            of_mean = k >= 3 and a[k - 1].endswith(PLUS_MINUS)
            scale = float(a[k - 2] if of_mean else a[k])
            report.number(
                f"{name} line {n}, number {i + 1}",
                float(a[k]),
                float(b[k]),
                line_spreads[i] if i < len(line_spreads) else None,
                resolution(a[k]),
                checkpoint=report.checkpoint.text(models, scale, a[k + 1].startswith(("%", "\\%"))),
            )
    _verdicts_moved(name, moved, checks_moved, report)
    if not noise and len(ref.splitlines()) != len(act.splitlines()):
        report.problems.append(
            f"{name}: {len(ref.splitlines())} lines in the reference, "
            f"{len(act.splitlines())} regenerated"
        )


def csv_spreads(table: pd.DataFrame) -> pd.DataFrame:
    """The measured spread of every numeric cell of a results CSV (NaN where none was measured).

    Seed groups (``scores.csv``): the sd over seeds of the row's group, rows without seeds the
    column's median group sd. Tables: ``<m>_std`` is the spread of ``<m>_mean`` and of itself.
    """
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    spreads = pd.DataFrame(np.nan, index=table.index, columns=numeric)
    if "seed" in table.columns:
        keys = [c for c in table.columns if c not in numeric] + ["members"] * (
            "members" in table.columns
        )
        measured = [c for c in numeric if c not in ("seed", "members")]
        sd = table.groupby(keys, dropna=False)[measured].transform("std")  # NaN: one seed
        for column in measured:
            spreads[column] = sd[column].fillna(sd[column].median())
    for column in numeric:
        if column.endswith("_std"):
            std = table[column].fillna(table[column].median())
            spreads[column] = std
            mean = column.removesuffix("_std") + "_mean"
            if mean in spreads.columns:
                spreads[mean] = std
    return spreads


def _cell_checkpoint(report, ref, i, models, key, column) -> float:
    """A cell's checkpoint unit; ``<m>_std`` moves at the scale of ``<m>_mean``'s noise."""
    mean = column.removesuffix("_std") + "_mean"
    if column.endswith("_std") and mean in ref.columns:
        column = mean
    return report.checkpoint.cell(models, key, column, float(ref.at[i, column]))


def compare_csv(name: str, ref_path: Path, act_path: Path, report: Report) -> None:
    ref, act = pd.read_csv(ref_path), pd.read_csv(act_path)
    if list(ref.columns) != list(act.columns) or len(ref) != len(act):
        report.problems.append(
            f"{name}: shape or columns differ (reference {ref.shape} "
            f"{list(ref.columns)}, regenerated {act.shape} {list(act.columns)})"
        )
        return
    raw = pd.read_csv(ref_path, dtype=str, keep_default_na=False)  # the numbers as printed
    spreads = csv_spreads(ref) if report.mode == "noise" else None
    text = [c for c in ref.columns if not pd.api.types.is_numeric_dtype(ref[c])]
    keys = text + [c for c in ROW_KEYS if c in ref.columns]
    noise = report.mode == "noise"
    for i in range(len(ref)):
        row = ", ".join(f"{k}={ref.at[i, k]}" for k in keys) or f"row {i + 1}"
        models = report.checkpoint.models(" ".join(str(ref.at[i, c]) for c in text))
        key = row_key(ref.loc[i], text)
        for column in ref.columns:
            x, y = ref.at[i, column], act.at[i, column]
            if column in text:
                if str(x) != str(y):
                    report.problems.append(f"{name} [{row}] {column}: {x!r} became {y!r}")
            elif column.startswith(TIMING_COLUMN):
                report.timing(f"{name} [{row}] {column}", x, y)
            elif pd.isna(x) or pd.isna(y):
                if not (pd.isna(x) and pd.isna(y)):
                    report.problems.append(f"{name} [{row}] {column}: {x} became {y}")
            else:
                spread = spreads.at[i, column] if spreads is not None else None
                report.number(
                    f"{name} [{row}] {column}",
                    float(x),
                    float(y),
                    spread,
                    resolution(raw.at[i, column]),
                    count=pd.api.types.is_integer_dtype(ref[column]),
                    checkpoint=_cell_checkpoint(report, ref, i, models, key, column)
                    if noise
                    else 0.0,
                )


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", head[16:24])


def compare_file(name: str, ref: Path, act: Path, report: Report) -> None:
    suffix = ref.suffix.lower()
    if suffix == ".csv":
        compare_csv(name, ref, act, report)
    elif suffix == ".png":
        try:
            if _png_size(ref) != _png_size(act):
                report.problems.append(
                    f"{name}: image size {_png_size(act)} differs from "
                    f"the reference {_png_size(ref)}"
                )
        except ValueError as err:
            report.problems.append(f"{name}: {err}")
    elif suffix == ".pdf":
        if not act.read_bytes().startswith(b"%PDF"):
            report.problems.append(f"{name}: not a PDF file")
    else:
        compare_text(name, ref.read_text(), act.read_text(), report)


def compare_trees(reference: Path, actual: Path, paths: list[str], report: Report) -> None:
    for top in paths:
        ref_files = {p.relative_to(reference) for p in (reference / top).rglob("*") if p.is_file()}
        act_files = {p.relative_to(actual) for p in (actual / top).rglob("*") if p.is_file()}
        if not ref_files:
            report.problems.append(f"{top}: the reference has no files (nothing to compare)")
        for missing in sorted(ref_files - act_files):
            report.problems.append(f"{missing}: in the reference but not regenerated")
        for extra in sorted(act_files - ref_files):
            report.problems.append(
                f"{extra}: regenerated but not in the committed reference "
                "(commit it, or stop producing it)"
            )
        for rel in sorted(ref_files & act_files):
            compare_file(str(rel), reference / rel, actual / rel, report)
    report.settle_tail()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="root holding the committed reference")
    parser.add_argument("actual", type=Path, help="root holding the regenerated outputs")
    parser.add_argument("--paths", nargs="+", default=["results/mini", "figures/mini"])
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="exact",
        help="exact: every number equal (pinned numerics, locked versions); noise: within "
        "--units noise units measured by the suite (another CPU family, other versions)",
    )
    parser.add_argument("--units", type=float, default=3.0, help="noise mode: allowed units")
    parser.add_argument(
        "--tail-units",
        type=float,
        default=6.0,
        help="noise mode: a few numbers (--tail-share of them) may move by up to this many units",
    )
    parser.add_argument(
        "--tail-share",
        type=float,
        default=0.0003,
        help="noise mode: the share of numbers that may move by --units to --tail-units",
    )
    parser.add_argument(
        "--floor-rel", type=float, default=0.005, help="noise mode: relative floor of a unit"
    )
    parser.add_argument(
        "--checkpoint-noise-from",
        type=Path,
        metavar="ROOT",
        help="noise mode: the root whose retrained models (<path>/train_noise) measure the "
        "checkpoint noise (default: the reference; give a newer reference for an older one "
        "that retrained fewer models)",
    )
    args = parser.parse_args(argv)
    if args.units <= 0 or args.floor_rel < 0:
        parser.error("--units must be > 0 and --floor-rel >= 0")
    if args.tail_units < args.units or not 0 <= args.tail_share < 1:
        parser.error("--tail-units must be >= --units and --tail-share in [0, 1)")
    for root in (args.reference, args.actual, args.checkpoint_noise_from):
        if root is not None and not root.is_dir():
            parser.error(f"{root}: no such folder")
    report = Report(mode=args.mode, units=args.units, floor_rel=args.floor_rel,
                    tail_units=args.tail_units, tail_share=args.tail_share)  # fmt: skip
    if args.mode == "noise":
        report.checkpoint = Units(measure(args.checkpoint_noise_from or args.reference, args.paths))
        print(
            "checkpoint noise (sd over training runs): "
            + (report.checkpoint.summary() or "none measured (no train_noise scores)")
        )
    compare_trees(args.reference, args.actual, args.paths, report)
    print(
        f"compared {report.numbers} numbers under {', '.join(args.paths)} ({args.mode} mode); "
        f"largest relative drift {report.max_drift:.3g}"
        + (" (identical numbers)" if report.numbers and report.max_drift == 0 else "")
        + (f"; {report.timings} measured times present, not compared" if report.timings else "")
    )
    if args.mode == "noise":
        print(
            f"noise units: {report.measured} of {report.numbers} numbers have a measured spread "
            f"(the rest the floor, {args.floor_rel:g} x |reference| + printed resolution); moved "
            + ", ".join(f"by more than {k}: {n}" for k, n in report.beyond.items())
        )
        if report.verdicts_moved:
            print(f"verdict words moved within noise ({len(report.verdicts_moved)}):")
            for moved in report.verdicts_moved:
                print(f"  - {moved}")
        if report.tail:
            print(f"numbers moved by {args.units:g} to {args.tail_units:g} units, within the tail "
                  f"allowance ({len(report.tail)}):")  # fmt: skip
            for moved in report.tail:
                print(f"  - {moved}")
    if report.problems:
        print(f"REGENERATION CHECK FAILED: {len(report.problems)} problem(s)", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("regeneration check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
