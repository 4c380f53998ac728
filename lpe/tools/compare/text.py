"""Text files (``.md``, ``.tex``, ...): lines aligned by their words, numbers compared token by
token with the spreads a table prints, the convergence gate's announcement set aside."""

from __future__ import annotations

import difflib
import re

import numpy as np

from lpe.core.selection import DISAGREEMENT, WITHIN_TIE_BAND
from lpe.reports.tabulate import TIMING_UNIT
from lpe.tools.compare.tolerances import NUMBER, PLUS_MINUS, Report, resolution
from lpe.tools.compare.verdicts import (
    VERDICT,
    _check_moved,
    _verdicts_moved,
)

# a line that announces a failed convergence gate (lpe.reports.claims): there only while a model
# fails it
GATE_LINE = re.compile(r"\bgate FAILED\b", re.IGNORECASE)


# the models such a line names ("gate FAILED for vit_mini_b, vit_mini_l**" or "...l: the claims")
GATE_MODELS = re.compile(r"(\bgate FAILED for )([\w.\-, ]+?)(\*\*|:)", re.IGNORECASE)

# how bma.model's choice file says that the configured model is the rule's choice
CHOICE_AGREES = "Configured bma.model: "


def _choice_moved(where: str, lines: list[str], report: Report) -> bool:
    """Lines of bma.model's choice (lpe.stages.select_model) that differ between the trees, in
    noise mode: when the rule chose another model than the configured one, accepted as a verdict
    moved within noise if the rule's own tie band covers the configured model, else a problem.
    False: not such lines."""
    said = [line for line in lines if line.lstrip().startswith(DISAGREEMENT)]
    if not said and not any(line.startswith(CHOICE_AGREES) for line in lines):
        return False
    shown = "\n".join(f"    {line}" for line in lines)
    if all(WITHIN_TIE_BAND in line for line in said):
        report.verdicts_moved.append(
            f"{where}: the rule's model choice moved within its tie band\n{shown}"
        )
    else:
        report.problems.append(
            f"{where}: the rule chose another model than bma.model, outside its tie band\n{shown}"
        )
    return True


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
                if _choice_moved(where, [line], report):
                    continue
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
            report.verdicts_moved.append(
                f"{name} line {n} (the gate's announcement names other "
                f"models): {ref_line} -> {act_line}"
            )
            continue
        if (
            noise
            and ref_line != act_line
            and _choice_moved(f"{name} line {n}", [ref_line, act_line], report)
        ):
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
