"""Claim 10, beyond the paper: LPE-BSR stored as one shared base, at equal memory, against
BMA and the fast ensembles."""

from __future__ import annotations

import pandas as pd

from lpe.core.checks import Check
from lpe.core.selection import joint_band
from lpe.formats.names import label as precision_label
from lpe.methods import bma_method, posterior_optimizers
from lpe.reports.claims.bands import (
    _mean_band,
)
from lpe.reports.claims.claim import Claim
from lpe.reports.claims.fast import FAST_NAMES
from lpe.reports.tabulate import budget_points, has_shared_memory


def _largest_that_fits(runs: pd.DataFrame, budget: int) -> tuple[int, bool]:
    """The largest ensemble size of ``runs`` whose memory (the paper's accounting: nothing is
    shared) is within ``budget``, and True; when none fits, the smallest size, and False (a
    fast source's sizes may start above 1: MultiIVON's draws of one run)."""
    fits = runs[runs["memory_bits"] <= budget]["members"]
    return (int(fits.max()), True) if len(fits) else (int(runs["members"].min()), False)


def _at_shared_memory(name: str, lpe: pd.DataFrame, other: pd.DataFrame, lpe_name: str) -> Check:
    """LPE-BSR at its largest size, stored as one shared base, against the largest ensemble of
    ``other`` (one row per seed and size) that fits in that memory."""
    full = lpe[lpe["members"] == lpe["members"].max()]
    budget = int(full["memory_bits_shared"].max())
    m, fits = _largest_that_fits(other, budget)
    rows = other[other["members"] == m]
    lpe_nll, lpe_sd, lpe_band = _mean_band(full)
    nll, sd, other_band = _mean_band(rows)
    fit = "the largest that fits" if fits else "none fits: the smallest, larger than the budget"
    return Check.of(
        f"{name}: {lpe_name} M={int(full['members'].max())} as one shared base "
        f"({budget / 8e6:.2f} MB) NLL {lpe_nll:.5f} ± {lpe_sd:.5f} vs {name} M={m} ({fit}, "
        f"{int(rows['memory_bits'].max()) / 8e6:.2f} MB) NLL {nll:.5f} ± {sd:.5f}",
        nll - lpe_nll,
        joint_band(lpe_band, other_band),
    )


def members_in_fp32_memory(scores: pd.DataFrame) -> list[str]:
    """Per model and precision: how many LPE-BSR members, stored as one shared base, fit in the
    memory of the FP32 model (m >= 2 members cost the base and m planes; read from the sizes 2
    and 3 of the scores)."""
    found = []
    for (model, precision), runs in scores[scores["method"] == "lpe-bsr"].groupby(
        ["model", "precision"], sort=False
    ):
        fp32 = scores[(scores["model"] == model) & (scores["method"] == "fp32")]
        sizes = runs.groupby("members")["memory_bits_shared"].max()
        if fp32.empty or not {2, 3} <= set(sizes.index):
            continue
        plane = int(sizes[3] - sizes[2])
        base = int(sizes[2]) - 2 * plane
        fit = (int(fp32["memory_bits"].max()) - base) // plane
        found.append(f"{model} {precision_label(precision)}: {fit}")
    return found


def claim10(
    scores: pd.DataFrame,
    bma_scores: pd.DataFrame | None,
    fmt: str,
    fast_scores: pd.DataFrame | None,
    fast_fmt: str,
) -> Claim:
    """Beyond the paper: LPE-BSR stored as one shared base, at equal memory."""
    checks = []
    if bma_scores is not None:
        shown = precision_label(fmt)
        for optimizer in posterior_optimizers():
            run = bma_scores[bma_scores["optimizer"] == optimizer]
            lpe = run[(run["method"] == "lpe-bsr") & (run["precision"] == fmt)]
            bma = run[run["method"] == bma_method(optimizer)]
            if len(lpe) and len(bma) and has_shared_memory(lpe):
                checks.append(
                    _at_shared_memory(f"{optimizer.upper()} BMA", lpe, bma, f"LPE-BSR {shown}")
                )
    if fast_scores is not None:
        lpe = fast_scores[
            (fast_scores["method"] == "lpe-bsr") & (fast_scores["precision"] == fast_fmt)
        ]
        around = f"LPE-BSR {precision_label(fast_fmt)} (SGD solution)"
        for method, name in FAST_NAMES.items():
            alone = budget_points(fast_scores, method)
            if len(lpe) and len(alone) and has_shared_memory(lpe):
                checks.append(_at_shared_memory(name, lpe, alone, around))
    fit = members_in_fp32_memory(scores) if has_shared_memory(scores) else []
    note = (
        "Beyond the paper, which counts an LPE-BSR ensemble as M full members (claims 4 and 5 "
        "keep that accounting). Stored as one shared base (`lpe.members.shared_base`), M "
        "members of one checkpoint and format cost the base codes, the scales and the FP32 "
        "tensors once and one bit per member and quantized weight; the score CSVs' "
        "`memory_bits_shared`. A check holds when LPE-BSR's NLL is below that of the largest "
        "ensemble of the other method that fits in the same memory (its members are FP32 "
        "models: nothing of theirs is shared). Bands: the draws' seeds; the fast methods and "
        "the fine-tuning runs are one training run each, whose own noise is not in the band. "
        + (f"LPE-BSR members that fit in one FP32 model's memory: {'; '.join(fit)}." if fit else "")
    )
    return Claim(
        10,
        "(beyond the paper) Stored as one shared base, an LPE-BSR ensemble beats "
        "the largest BMA, SSE, CSGLD, DE or MultiIVON ensemble that fits in its "
        "memory.",
        checks,
        note,
        basis="one fine-tuning or training run per method",
    )
