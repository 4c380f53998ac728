"""The regeneration check: compare freshly generated results with the committed reference.

Every file under the reference folders must exist in the regenerated ones and vice versa.
Numbers are compared with a tolerance (``|a - b| <= abs + rel * |reference|``) that absorbs
floating-point differences between machines; on the same machine the regeneration is exact and
the report says so (maximum drift 0). Text around the numbers (names, verdicts) must match
exactly. A failure names the file, the row/line and the number that moved.

- ``.csv``: cell by cell; a row is named by its text columns (and ``seed``/``members``).
- ``.md``, ``.tex`` and other text: token by token (numbers vs the words between them).
- ``.png``, ``.pdf``: present, of the right kind and (png) the same pixel size; the pixels are
  not compared, since font rendering differs between machines.

Usage: ``python -m lpe.compare REFERENCE_ROOT ACTUAL_ROOT --paths results/mini figures/mini``
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
ROW_KEYS = ("seed", "members")


@dataclass
class Report:
    rel: float
    abs: float
    problems: list[str] = field(default_factory=list)
    numbers: int = 0
    max_drift: float = 0.0  # largest |a - b| / max(|reference|, 1e-12) seen

    def number(self, where: str, ref: float, act: float) -> None:
        self.numbers += 1
        drift = abs(act - ref)
        if drift:
            self.max_drift = max(self.max_drift, drift / max(abs(ref), 1e-12))
        if not drift <= self.abs + self.rel * abs(ref):
            self.problems.append(
                f"{where}: reference {ref:g}, regenerated {act:g} "
                f"(moved by {act - ref:+.3g}; tolerance {self.abs:g} + "
                f"{self.rel:g} x |reference|)"
            )


def _text_tokens(text: str) -> list[str | float]:
    tokens: list[str | float] = []
    position = 0
    for match in NUMBER.finditer(text):
        tokens.append(" ".join(text[position : match.start()].split()))
        tokens.append(float(match.group()))
        position = match.end()
    tokens.append(" ".join(text[position:].split()))
    return tokens


def compare_text(name: str, ref: str, act: str, report: Report) -> None:
    for n, (ref_line, act_line) in enumerate(
        zip(ref.splitlines(), act.splitlines(), strict=False), 1
    ):
        a, b = _text_tokens(ref_line), _text_tokens(act_line)
        if len(a) != len(b) or any(
            isinstance(x, str) and x != y for x, y in zip(a, b, strict=True)
        ):
            report.problems.append(
                f"{name} line {n}: text differs\n    reference:   "
                f"{ref_line}\n    regenerated: {act_line}"
            )
            continue
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            if isinstance(x, float):
                report.number(f"{name} line {n}, number {k // 2 + 1}", x, y)
    if len(ref.splitlines()) != len(act.splitlines()):
        report.problems.append(
            f"{name}: {len(ref.splitlines())} lines in the reference, "
            f"{len(act.splitlines())} regenerated"
        )


def compare_csv(name: str, ref_path: Path, act_path: Path, report: Report) -> None:
    ref, act = pd.read_csv(ref_path), pd.read_csv(act_path)
    if list(ref.columns) != list(act.columns) or len(ref) != len(act):
        report.problems.append(
            f"{name}: shape or columns differ (reference {ref.shape} "
            f"{list(ref.columns)}, regenerated {act.shape} {list(act.columns)})"
        )
        return
    text = [c for c in ref.columns if not pd.api.types.is_numeric_dtype(ref[c])]
    keys = text + [c for c in ROW_KEYS if c in ref.columns]
    for i in range(len(ref)):
        row = ", ".join(f"{k}={ref.at[i, k]}" for k in keys) or f"row {i + 1}"
        for column in ref.columns:
            x, y = ref.at[i, column], act.at[i, column]
            if column in text:
                if str(x) != str(y):
                    report.problems.append(f"{name} [{row}] {column}: {x!r} became {y!r}")
            elif pd.isna(x) or pd.isna(y):
                if not (pd.isna(x) and pd.isna(y)):
                    report.problems.append(f"{name} [{row}] {column}: {x} became {y}")
            else:
                report.number(f"{name} [{row}] {column}", float(x), float(y))


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="root holding the committed reference")
    parser.add_argument("actual", type=Path, help="root holding the regenerated outputs")
    parser.add_argument("--paths", nargs="+", default=["results/mini", "figures/mini"])
    parser.add_argument("--rel", type=float, default=0.02, help="relative tolerance")
    parser.add_argument("--abs", type=float, default=0.002, help="absolute tolerance")
    args = parser.parse_args(argv)
    report = Report(rel=args.rel, abs=args.abs)
    compare_trees(args.reference, args.actual, args.paths, report)
    print(
        f"compared {report.numbers} numbers under {', '.join(args.paths)}; "
        f"largest relative drift {report.max_drift:.3g}"
        + (" (identical numbers)" if report.numbers and report.max_drift == 0 else "")
    )
    if report.problems:
        print(f"REGENERATION CHECK FAILED: {len(report.problems)} problem(s)", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("regeneration check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
