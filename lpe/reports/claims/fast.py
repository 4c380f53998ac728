"""Claim 5: fast ensembles with and without LPE-BSR at equal training budget
(``fast/scores.csv``), with the spread of their starting checkpoint."""

from __future__ import annotations

import pandas as pd

from lpe.core.artifacts import read_manifest
from lpe.core.checks import Check, outcome_of
from lpe.core.selection import NOISE_SE
from lpe.formats.names import label as precision_label
from lpe.methods import BY_NAME, LPE_SUFFIX, fast_with_lpe, with_lpe
from lpe.reports.claims.claim import Claim
from lpe.reports.tabulate import budget_points

FAST_NAMES = {m: BY_NAME[m].label for m in fast_with_lpe()}


def rate_choices(folders: list[str]) -> str:
    """The peak rates SSE and CSGLD chose on validation, from their sources' manifests."""
    texts = []
    for folder in folders:
        manifest = read_manifest(folder, "sources folder")
        choice = manifest["settings"].get("lr_choice")
        if not choice:
            continue
        nll = ", ".join(f"{lr}: {v:.5f}" for lr, v in choice["validation_nll"].items())
        texts.append(
            f"{FAST_NAMES.get(manifest['method'], manifest['method'])} peak rate "
            f"{choice['chosen']:g} (snapshot 1's validation NLL per candidate {nll}; the "
            f"starting model's {choice['start_validation_nll']:.5f})"
        )
    return "; ".join(texts)


def checkpoint_spread(
    checkpoints: list[pd.DataFrame], members: int, fmt: str
) -> tuple[dict[str, float], str]:
    """Claim 5's checkpoint band: per metric (NLL, ECE), NOISE_SE standard deviations over
    trained checkpoints of one model (``checkpoints``: each one's scores, FP32 and LPE-BSR
    ``fmt`` at its first seed; the workflow's ``fast/checkpoints/``: the fast ensembles'
    starting model and its ``train_noise`` copies) of LPE-BSR's gain over FP32 at ``members``
    members, the one-source analogue of "a source with its LPE-BSR copies". The fast ensembles
    all start from one checkpoint, so their margins move with it, which their seeds cannot see.
    Returns ({}, "") for fewer than two checkpoints.
    """
    shown = precision_label(fmt)
    if len(checkpoints) < 2:
        return {}, ""
    spreads = {}
    for metric in ("nll", "ece"):
        gains = []
        for run in checkpoints:
            first = run.loc[run["method"] == "lpe-bsr", "seed"].min()
            bsr = run[
                (run["method"] == "lpe-bsr")
                & (run["precision"] == fmt)
                & (run["seed"] == first)
                & (run["members"] == members)
            ]
            if bsr.empty:
                raise ValueError(
                    f"a checkpoint's scores have no LPE-BSR {fmt} ensemble of "
                    f"{members} members (claim 5's copies per source)"
                )
            gains.append(run.loc[run["method"] == "fp32", metric].iloc[0] - bsr[metric].iloc[0])
        spreads[metric] = NOISE_SE * float(pd.Series(gains).std(ddof=1))
    text = (
        f"Each budget's band also holds the starting checkpoint: {NOISE_SE:g} standard "
        f"deviations over {len(checkpoints)} trained checkpoints of the starting model "
        f"(train_noise) of LPE-BSR {shown}'s gain over FP32 at {members} members, in "
        f"quadrature: NLL ±{spreads['nll']:.5f}, ECE ±{spreads['ece']:.5f}."
    )
    return spreads, text


def copies_per_source(fast_scores: pd.DataFrame) -> int:
    """k, the LPE-BSR copies of each fast source: the members with LPE-BSR at the first budget
    (one source) of any method."""
    method = next(m for m in fast_scores["method"].unique() if m.endswith(LPE_SUFFIX))
    points = budget_points(fast_scores, method)
    return int(points.loc[points["backward_passes"].idxmin(), "members"])


def claim5(
    fast_scores: pd.DataFrame,
    fmt: str,
    rates: str = "",
    checkpoint: tuple[dict[str, float], str] = ({}, ""),
) -> Claim:
    """Per method and metric: does adding LPE-BSR help at every training budget?

    ``checkpoint`` is :func:`checkpoint_spread`'s band per metric and its sentence: added in
    quadrature to every budget's band (none when empty: the bands cover the draws only).
    """
    shown = precision_label(fmt)
    spreads, spread_text = checkpoint
    checks = []
    for method, name in FAST_NAMES.items():
        alone = budget_points(fast_scores, method).set_index("backward_passes")
        copies = budget_points(fast_scores, with_lpe(method)).groupby("backward_passes")
        if alone.empty or not len(copies):
            continue
        for metric in ("nll", "ece"):
            copied = copies[metric].mean()
            draws = copies[metric].std().fillna(0.0) * NOISE_SE / copies[metric].count() ** 0.5
            bands = (draws**2 + spreads.get(metric, 0.0) ** 2) ** 0.5
            margins = alone[metric] - copied
            last = alone.index.max()
            parts = tuple(zip(margins.tolist(), bands.reindex(margins.index).tolist(), strict=True))
            better = sum(outcome_of(m, b) == "holds" for m, b in parts)
            checks.append(
                Check(
                    f"{name} {metric.upper()}: + LPE-BSR {shown} better at {better} of "
                    f"{len(parts)} training budgets; with all {int(alone.loc[last, 'members'])}"
                    f" sources {alone.loc[last, metric]:.5f} alone vs {copied[last]:.5f} with "
                    f"LPE-BSR ({int(copies['members'].max()[last])} members)",
                    parts,
                    metric.upper(),
                )
            )
    note = (
        "A training budget is the backward passes spent when the first c snapshots, samples or "
        "runs exist (c = 1..K); LPE-BSR adds none. One margin per budget (source alone - with "
        "LPE-BSR, mean over LPE-BSR seeds): a check holds when LPE-BSR helps at every budget. "
        "The copies cost memory: k INT-b members per source. "
        + (
            spread_text
            or "The bands cover the draws only: the starting model was not retrained (train_noise)."
        )
    )
    if rates:
        note += f" Chosen on the validation split from the configured candidates: {rates}."
    return Claim(
        5,
        "Adding LPE-BSR to SSE, CSGLD, DE or MultiIVON improves NLL/ECE at equal training budget.",
        checks,
        note,
        basis="one training run per fast method",
        parts=("NLL", "ECE"),
    )
