"""The claims report: does each claim of the paper reproduce here? With the numbers and the noise.

Claims 1-3 and 7 of docs/paper.md are checked on ``scores.csv`` (LPE-BSR at its largest ensemble
size, mean over BSR seeds; RTN and FP32 are deterministic given the checkpoint), claim 4 on
``bma/scores.csv`` (LPE-BSR vs SWAG and IVON BMA), claim 5 on ``fast/scores.csv`` (fast ensembles
with and without LPE-BSR at equal training budget), claim 6 on ``baselines/scores.csv``, and
the paper's outlook (claim 8: claim 1 in other number formats) on ``formats/scores.csv``, and
claim 10, beyond the paper (LPE-BSR stored as one shared base, at equal memory), on the scores'
``memory_bits_shared``. Each
claim is split into checks (one per model, precision or both). A check has a margin (positive on
the claim's side) and a noise band: NOISE_SE standard errors of the mean over the ensemble seeds,
widened by the spread over training seeds where a model was retrained (``train_noise``). It
holds above the band, fails below minus the band, and is "within noise" in between. A claim's
verdict counts the decided checks only: "reproduced" when all hold, "partially reproduced" when
some do, "not reproduced" when none does, "undecided" when every check is within noise; a claim
with several parts (claim 2's size and precision) is decided per part and reproduced only when
every part is. A check within noise prints which way its margins lean.
Nothing here is tuned: the thresholds are the claims' own (a difference of NLL > 0), and claim
4's "competitive" is a fixed 1% of NLL. The report opens with the convergence gate of each
trained model (lpe.models.checkpoints), loudly when one fails.

Usage: ``python -m lpe.reports.claims --scores results/mini/scores.csv [--checkpoints CKPT ...]
[--bma-scores results/mini/bma/scores.csv --bma-format int5 --ivon-posterior POSTERIOR]
[--baseline-scores results/mini/baselines/scores.csv --baseline-choices CHOICE ...]
[--fast-scores results/mini/fast/scores.csv --fast-format int5 --fast-checkpoint-scores SCORES ...]
[--retrained-scores SCORES ...]
[--format-scores results/mini/formats/scores.csv] --out results/mini/claims.md``
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from lpe.cli.jobs import apply_settings
from lpe.core.artifacts import read_metadata, write_text
from lpe.core.selection import DISAGREEMENT, NOISE_SE
from lpe.models.checkpoints import (
    GATE_RISE,
    GATE_TOLERANCE,
    GATE_WINDOW,
    checkpoint_info,
    convergence_gate,
)
from lpe.reports.claims.bands import (
    CONFIDENCE,
    over_checkpoints,
    summary,
    with_training_bands,
)
from lpe.reports.claims.baselines import choices_text, claim6
from lpe.reports.claims.bma import claim4
from lpe.reports.claims.fast import (
    checkpoint_spread,
    claim5,
    copies_per_source,
    rate_choices,
)
from lpe.reports.claims.lpe_bsr import (
    claim1,
    claim2,
    claim3,
    claim7,
    claim8,
    claim9,
)
from lpe.reports.claims.memory import (
    claim10,
)
from lpe.reports.tabulate import has_shared_memory


def gate_section(checkpoints: list[str]) -> tuple[str, list[str]]:
    """The convergence gate of each Table 1 model: a Markdown section and the failing models."""
    rows, failing = [], []
    for path in checkpoints:
        info = checkpoint_info(path)
        gain, rise, passed = convergence_gate(path)
        rows.append(
            f"| {info.model} | {-100 * gain:+.2f}% | {100 * rise:+.2f}% | "
            f"{'passes' if passed else 'FAILS'} |"
        )
        failing += [] if passed else [info.model]
    lines = [
        "## Convergence gate",
        "",
        f"A model passes when it was trained to a plateau (its best validation NLL improved by "
        f"less than {100 * GATE_TOLERANCE:g}% over the last {100 * GATE_WINDOW:g}% of its "
        f"epochs) and not past its best (the last epoch's validation NLL at most "
        f"{100 * GATE_RISE:g}% above the best epoch's). The checkpoint kept is the best epoch's.",
        "",
        f"| model | best validation NLL change over the last {100 * GATE_WINDOW:g}% of epochs | "
        "last epoch vs best | gate |",
        "|---|---:|---:|---|",
        *rows,
    ]
    if failing:
        lines += [
            "",
            f"**GATE FAILED for {', '.join(failing)}: the claims on these models are "
            "about models either still improving (train longer: train.epochs) or trained "
            "far past their best (train shorter), not the paper's well-trained "
            "ones.**",
        ]
    return "\n".join(lines) + "\n", failing


def disagreement(choice_file: str) -> str:
    """The choice file's line when the rule chose another model than bma.model (else empty):
    claims 4-6 and 10 are then about the configured model, not the rule's choice."""
    with open(choice_file) as f:
        return next((line.strip() for line in f if line.startswith(DISAGREEMENT)), "")


def _training_note(s: pd.DataFrame) -> str:
    measured = s[s["train_seeds"] > 1].drop_duplicates("model")
    if measured.empty:
        return (
            "The bands do not cover the spread over training seeds: every number comes from "
            "one trained model per size and one fine-tuning run per method."
        )
    listed = ", ".join(f"{r.model} ({int(r.train_seeds)})" for r in measured.itertuples())
    others = sorted(set(s["model"]) - set(measured["model"]))
    return (
        f"The models trained more than once by the workflow (train_noise; trained models in "
        f"brackets): {listed}. For them each check of claims 1-3, 7 and 9 is decided on every "
        "trained model: its margin is the mean over the trained models of each one's own margin "
        "(paired: its FP32, RTN and LPE-BSR, the LPE-BSR at its first BSR seed), and its band "
        f"is Student's t ({100 * (2 * CONFIDENCE - 1):g}%, K - 1 degrees of freedom for K trained "
        "models) times the standard error of that mean, which holds the spread over training "
        "seeds and one draw's noise each, combined in quadrature with the main run's band over "
        "its BSR seeds. Each check lists the margin of every trained model, the main run's first. "
        "So another rounding of the same training (another CPU) is another draw inside the bands"
        + (
            f"; {', '.join(others)} trained once, their bands cover the draws only"
            if others
            else ""
        )
        + ". Claim 8's checks are on the first trained model (its formats are not retrained), "
        f"their bands widened by {NOISE_SE:g} standard deviations of the INT-b margins over the "
        "trained models. Claim 5's bands also hold the spread of its starting checkpoint (see "
        "its note). Claims 4, 5, 6 and 10 rest on one fine-tuning or training run per method "
        "(their verdict lines say so): retraining those is beyond the mini budget."
    )


def report(
    scores: pd.DataFrame,
    bma_scores: pd.DataFrame | None = None,
    fmt: str = "int5",
    baseline_scores: pd.DataFrame | None = None,
    fast_scores: pd.DataFrame | None = None,
    *,
    fast_fmt: str = "int5",
    checkpoints: list[str] = (),
    hessian: dict[str, float] | None = None,
    chosen: str = "",
    retrained: list[pd.DataFrame] = (),
    rates: str = "",
    format_scores: pd.DataFrame | None = None,
    fast_checkpoints: list[pd.DataFrame] = (),
    choice_note: str = "",
) -> str:
    s = over_checkpoints(summary(scores), scores, list(retrained))
    claims = [claim1(s), claim2(s), claim3(s)]
    if bma_scores is not None:
        claims.append(claim4(bma_scores, fmt, hessian))
    if fast_scores is not None:
        spread = (
            checkpoint_spread(list(fast_checkpoints), copies_per_source(fast_scores), fast_fmt)
            if fast_checkpoints
            else ({}, "")
        )
        claims.append(claim5(fast_scores, fast_fmt, rates, spread))
    if baseline_scores is not None:
        claims.append(claim6(baseline_scores, chosen))
    claims.append(claim7(s))
    if format_scores is not None:
        formats = with_training_bands(summary(format_scores), scores, list(retrained))
        claims.append(claim8(formats))
    if s["fp32_ts"].notna().all():
        claims.append(claim9(s))
    if has_shared_memory(scores):
        claims.append(claim10(scores, bma_scores, fmt, fast_scores, fast_fmt))
    seeds = sorted({seed for row in s["seeds"] for seed in row})
    sources = ["`scores.csv` (claims 1-3, 7, 9, 10)"]
    sources += ["`bma/scores.csv` (claims 4, 10)"] if bma_scores is not None else []
    sources += ["`fast/scores.csv` (claims 5, 10)"] if fast_scores is not None else []
    sources += ["`baselines/scores.csv` (claim 6)"] if baseline_scores is not None else []
    sources += ["`formats/scores.csv` (claim 8)"] if format_scores is not None else []
    head = [
        "# Claims report",
        "",
        f"Generated by `python -m lpe.reports.claims` from {', '.join(sources)}; "
        "do not edit by hand.",
        f"Claims 1-3, 7 and 9: LPE-BSR at M = {int(s['members'].max())} members, mean ± sd over "
        f"BSR seeds {seeds} of the main run; RTN and FP32 are deterministic given the checkpoint"
        + (
            "; each check is decided on every trained model of its size (below)."
            if (s["train_seeds"] > 1).any()
            else " (one trained model per size)."
        ),
        "",
        "Every check is three-valued. Its margin is positive on the claim's side; it **holds** "
        "when the margin exceeds the noise band, **fails** when it is below minus the band, and "
        f"is **within noise** otherwise. The band is {NOISE_SE:g} standard errors of the mean "
        "over the seeds of the ensemble draws (LPE-BSR, BMA, noise and dropout members), "
        "combined in quadrature for a difference of two such means. "
        + _training_note(s)
        + " A verdict counts only the decided checks.",
        "",
        "A claim whose statement has several parts is decided part by part (its verdict line "
        "lists them): it is reproduced only when every part is. A check within noise is "
        "undecided, but its margins still lean one way: the last column counts those that lean "
        "against the claim.",
        "",
        "| claim | verdict | decided checks that hold | within noise | within noise, leaning "
        "against |",
        "|---|---|---:|---:|---:|",
    ]
    head += [
        f"| {c.number} | {c.verdict} | {c.count('holds')} of "
        f"{c.count('holds') + c.count('fails')} | {c.count('within noise')} | "
        f"{c.leaning_against()} |"
        for c in claims
    ]
    if choice_note:
        head[2:2] = [choice_note, ""]
    gate = ""
    if checkpoints:
        gate, failing = gate_section(list(checkpoints))
        if failing:
            head[2:2] = [f"**Convergence gate FAILED for {', '.join(failing)}** (see below).", ""]
    return "\n".join(head) + "\n\n" + gate + "\n" + "\n".join(c.markdown() for c in claims)


# The job's values (lpe.core.settings): the members' formats of claims 4 and 5 (the workflow
# names them from the config once), and the formats' scores when the config has a formats
# section with models (else none)
CLAIMS_SETTINGS = {
    "job.bma_format": "bma_format",
    "job.fast_format": "fast_format",
    "job.format_scores": "format_scores",
    "job.model_choice": "model_choice",
}


# the options that take lists of files
LISTS = {
    "--checkpoints": "Table 1's checkpoints, for the convergence gate",
    "--baseline-choices": "the baselines' choice files (settings chosen on validation)",
    "--fast-sources": "sources folders whose peak rate was chosen (SSE, CSGLD)",
    "--retrained-scores": "scores of one Table 1 model retrained with other seeds",
    "--fast-checkpoint-scores": "scores (FP32, LPE-BSR) of each trained checkpoint of the fast "
    "ensembles' starting model: claim 5's checkpoint band",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--bma-scores", help="bma/scores.csv, for claim 4")
    parser.add_argument("--bma-format", default="int5", help="LPE-BSR members' format of claim 4")
    parser.add_argument("--ivon-posterior", help="IVON's posterior file: how far it moved")
    parser.add_argument("--baseline-scores", help="baselines/scores.csv, for claim 6")
    parser.add_argument("--fast-scores", help="fast/scores.csv, for claim 5")
    parser.add_argument("--fast-format", default="int5", help="LPE-BSR copies' format of claim 5")
    parser.add_argument("--format-scores", help="formats/scores.csv, for claim 8 (the outlook)")
    parser.add_argument(
        "--model-choice",
        help="bma/model_choice.md: its line is repeated here "
        "when the rule chose another model than bma.model",
    )
    for flag, files in LISTS.items():  # each takes any number of files, none by default
        parser.add_argument(flag, nargs="*", default=[], help=files)
    parser.add_argument("--out", required=True)
    apply_settings(parser, argv, CLAIMS_SETTINGS)
    args = parser.parse_args(argv)
    bma = pd.read_csv(args.bma_scores) if args.bma_scores else None
    baselines = pd.read_csv(args.baseline_scores) if args.baseline_scores else None
    fast = pd.read_csv(args.fast_scores) if args.fast_scores else None
    hessian = None
    if args.ivon_posterior:
        meta = read_metadata(args.ivon_posterior, "posterior file")
        hessian = json.loads(meta["hessian_moved"]) if "hessian_moved" in meta else None
    text = report(
        pd.read_csv(args.scores),
        bma,
        args.bma_format,
        baselines,
        fast,
        fast_fmt=args.fast_format,
        checkpoints=args.checkpoints,
        hessian=hessian,
        chosen=choices_text(args.baseline_choices),
        retrained=[pd.read_csv(p) for p in args.retrained_scores],
        rates=rate_choices(args.fast_sources),
        format_scores=pd.read_csv(args.format_scores) if args.format_scores else None,
        fast_checkpoints=[pd.read_csv(p) for p in args.fast_checkpoint_scores],
        choice_note=disagreement(args.model_choice) if args.model_choice else "",
    )
    write_text(args.out, text)
    print(text)
    if "GATE FAILED" in text:
        print("WARNING: the convergence gate failed; see the claims report", file=sys.stderr)


if __name__ == "__main__":
    main()
