"""Claim 6: LPE-BSR against the training-free baselines (``baselines/scores.csv``), each
with its setting chosen on validation."""

from __future__ import annotations

import json

import pandas as pd

from lpe.core.checks import Check
from lpe.core.selection import at_an_end, joint_band
from lpe.formats.names import label as precision_label
from lpe.methods import baselines, family
from lpe.reports.claims.bands import (
    _mean_band,
)
from lpe.reports.claims.claim import Claim
from lpe.reports.tabulate import final_ensembles

BASELINE_NAMES = {s.name: s.label for s in family("baseline")}  # lpe.methods


# how each choice is worded (its module's, lpe.methods); matched noise takes LPE-BSR's
CHOICE_NAMES = {name: b.chosen for name, b in baselines().items() if b.chosen}


def choices_text(paths: list[str]) -> str:
    """The settings the baselines stage chose on validation, e.g. ``LPE-BSR INT-5, ...``."""
    chosen = []
    for path in paths:
        choice = json.loads(open(path).read())
        if choice["method"] in CHOICE_NAMES:
            setting = float(choice["setting"])
            edge = at_an_end(setting, choice.get("candidates", []))
            chosen.append(
                CHOICE_NAMES[choice["method"]].format(setting)
                + (" (an end of its candidates)" if edge else "")
            )
    return ", ".join(chosen)


def claim6(baseline_scores: pd.DataFrame, chosen: str = "") -> Claim:
    """LPE-BSR against the Gaussian-noise and MC-dropout ensembles, at each one's largest size;
    LPE-BSR at the one precision the baselines stage chose on validation."""
    runs = final_ensembles(baseline_scores)
    lpe = runs[runs["method"] == "lpe-bsr"]
    if lpe["precision"].nunique() > 1:
        listed = sorted(lpe["precision"].unique())
        raise ValueError(f"baselines/scores.csv has LPE-BSR at {listed}; expected the one chosen")
    shown = precision_label(lpe["precision"].iloc[0]) if len(lpe) else "INT-?"
    checks = []
    for method, name in BASELINE_NAMES.items():
        other = runs[runs["method"] == method]
        if other.empty:
            continue
        if lpe.empty:
            checks.append(Check(f"no LPE-BSR {shown} scores to compare with {name}", (), name))
            continue
        (lpe_nll, lpe_sd, lpe_band) = _mean_band(lpe)
        (other_nll, other_sd, other_band) = _mean_band(other)
        checks.append(
            Check.of(
                f"{lpe['model'].iloc[0]}: LPE-BSR {shown} (M={int(lpe['members'].max())}) NLL "
                f"{lpe_nll:.5f} ± {lpe_sd:.5f} vs {name} (M={int(other['members'].max())}) "
                f"{other_nll:.5f} ± {other_sd:.5f}",
                other_nll - lpe_nll,
                joint_band(lpe_band, other_band),
                name,
            )
        )
    note = (
        "Every method's one setting is chosen on the validation split (with the first seed's "
        "ensemble) from its configured candidates: LPE-BSR's precision, the noise scale and "
        "the dropout rate" + (f" ({chosen})" if chosen else "") + ". The matched Gaussian noise "
        "has, per weight, the variance of LPE-BSR's rounding at the chosen precision, "
        "s^2 f (1 - f) (s the grid step, f the weight's fractional position between two grid "
        "points): the same perturbation size, Gaussian instead of two-point."
    )
    return Claim(
        6,
        "LPE-BSR is better than the training-free Gaussian-noise and MC-dropout baselines.",
        checks,
        note,
        basis="one trained model (the first checkpoint of baselines.model)",
        parts=tuple(c.claim_part for c in checks),
    )
