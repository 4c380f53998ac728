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
import struct
import sys
from pathlib import Path

from lpe.tools.checkpoint_noise import Units, measure
from lpe.tools.compare.tables import (
    compare_csv,
)
from lpe.tools.compare.text import (
    compare_text,
)
from lpe.tools.compare.tolerances import Report

MODES = ("exact", "noise")


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


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def print_summary(args: argparse.Namespace, report: Report) -> None:
    """What was compared and how far it moved; in noise mode, the moves within noise."""
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
            print(
                f"numbers moved by {args.units:g} to {args.tail_units:g} units, within the tail "
                f"allowance ({len(report.tail)}):"
            )
            for moved in report.tail:
                print(f"  - {moved}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.units <= 0 or args.floor_rel < 0:
        parser.error("--units must be > 0 and --floor-rel >= 0")
    if args.tail_units < args.units or not 0 <= args.tail_share < 1:
        parser.error("--tail-units must be >= --units and --tail-share in [0, 1)")
    for root in (args.reference, args.actual, args.checkpoint_noise_from):
        if root is not None and not root.is_dir():
            parser.error(f"{root}: no such folder")
    report = Report(
        mode=args.mode,
        units=args.units,
        floor_rel=args.floor_rel,
        tail_units=args.tail_units,
        tail_share=args.tail_share,
    )
    if args.mode == "noise":
        report.checkpoint = Units(measure(args.checkpoint_noise_from or args.reference, args.paths))
        print(
            "checkpoint noise (sd over training runs): "
            + (report.checkpoint.summary() or "none measured (no train_noise scores)")
        )
    compare_trees(args.reference, args.actual, args.paths, report)
    print_summary(args, report)
    if report.problems:
        print(f"REGENERATION CHECK FAILED: {len(report.problems)} problem(s)", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("regeneration check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
