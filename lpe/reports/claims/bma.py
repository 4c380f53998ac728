"""Claim 4: LPE-BSR against SWAG and IVON Bayesian model averaging (``bma/scores.csv``)."""

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

COMPETITIVE = 0.01  # claim 4's "competitive": NLL at most 1% above BMA's (fixed, not tuned)


def claim4_note(bma_scores: pd.DataFrame, hessian: dict[str, float] | None) -> str:
    """What claim 4's checks mean, the FP32 solutions' NLL for context, and IVON's posterior."""
    note = (
        f"Competitive = LPE-BSR's NLL at most {100 * COMPETITIVE:.0f}% above BMA's at the same "
        "ensemble size; better at equal memory = lower NLL than the largest BMA ensemble that "
        "fits in the LPE-BSR ensemble's memory. Mean ± sd over the seeds of the draws; one "
        "fine-tuning run per optimizer."
    )
    solutions = bma_scores[bma_scores["method"] == "fp32"].set_index("optimizer")["nll"]
    if len(solutions):
        listed = ", ".join(f"{o.upper()} {v:.5f}" for o, v in solutions.items())
        note += (
            f" For context, the FP32 solutions themselves (one model each) have NLL {listed}: "
            "an ensemble above its solution's NLL has not improved on the single model."
        )
    if hessian:
        note += (
            f" IVON's learned posterior: the median ratio of its Hessian estimate to "
            f"`hess_init` is {hessian['median_ratio']:.3g} (10%-90% of the weights: "
            f"{hessian['p10_ratio']:.3g}-{hessian['p90_ratio']:.3g}); a ratio of 1 would mean "
            "the posterior's variance is still the configured isotropic one."
        )
    return note


def claim4(bma_scores: pd.DataFrame, fmt: str, hessian: dict[str, float] | None = None) -> Claim:
    """LPE-BSR around SWAG's and IVON's solutions against their BMA, by size and by memory."""
    shown = precision_label(fmt)
    checks = []
    for optimizer in posterior_optimizers():
        run = bma_scores[bma_scores["optimizer"] == optimizer]
        lpe = run[(run["method"] == "lpe-bsr") & (run["precision"] == fmt)]
        bma = run[run["method"] == bma_method(optimizer)]
        if lpe.empty or bma.empty:
            checks += [
                Check(f"{optimizer}: no LPE-BSR {shown} or BMA scores", (), part)
                for part in ("equal size", "equal memory")
            ]
            continue
        size = int(min(lpe["members"].max(), bma["members"].max()))
        lpe_nll, lpe_sd, lpe_band = _mean_band(lpe[lpe["members"] == size])
        bma_nll, bma_sd, bma_band = _mean_band(bma[bma["members"] == size])
        checks.append(
            Check.of(
                f"{optimizer.upper()}, equal size M={size}: LPE-BSR {shown} NLL {lpe_nll:.5f} "
                f"± {lpe_sd:.5f} vs BMA {bma_nll:.5f} ± {bma_sd:.5f} "
                f"({100 * (lpe_nll / bma_nll - 1):+.2f}%)",
                (1 + COMPETITIVE) * bma_nll - lpe_nll,
                joint_band(lpe_band, bma_band),
                "equal size",
            )
        )
        full = int(lpe["members"].max())
        lpe_full = lpe[lpe["members"] == full]
        budget = int(lpe_full["memory_bits"].max())
        affordable = bma[bma["memory_bits"] <= budget]["members"]
        m = int(affordable.max()) if len(affordable) else 1
        bma_nll, bma_sd, bma_band = _mean_band(bma[bma["members"] == m])
        lpe_nll, lpe_sd, lpe_band = _mean_band(lpe_full)
        bma_bits = int(bma[bma["members"] == m]["memory_bits"].max())
        checks.append(
            Check.of(
                f"{optimizer.upper()}, equal memory: LPE-BSR {shown} M={full} "
                f"({budget / 8e6:.2f} MB) NLL {lpe_nll:.5f} ± {lpe_sd:.5f} vs BMA M={m} "
                f"({bma_bits / 8e6:.2f} MB) NLL {bma_nll:.5f} ± {bma_sd:.5f}",
                bma_nll - lpe_nll,
                joint_band(lpe_band, bma_band),
                "equal memory",
            )
        )
    note = claim4_note(bma_scores, hessian)
    return Claim(
        4,
        "LPE-BSR around a solution is competitive with SWAG and IVON BMA at equal ensemble "
        "size, and better at equal memory budget.",
        checks,
        note,
        basis="one fine-tuning run per optimizer",
        parts=("equal size", "equal memory"),
    )
