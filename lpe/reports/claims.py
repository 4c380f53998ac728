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
some do, "not reproduced" when none does, "undecided" when every check is within noise.
Nothing here is tuned: the thresholds are the claims' own (a difference of NLL > 0), and claim
4's "competitive" is a fixed 1% of NLL. The report opens with the convergence gate of each
trained model (lpe.models.checkpoints), loudly when one fails.

Usage: ``python -m lpe.reports.claims --scores results/mini/scores.csv [--checkpoints CKPT ...]
[--bma-scores results/mini/bma/scores.csv --bma-bits 5 --ivon-posterior POSTERIOR]
[--baseline-scores results/mini/baselines/scores.csv --baseline-choices CHOICE ...]
[--fast-scores results/mini/fast/scores.csv --fast-bits 5 --fast-checkpoint-scores SCORES ...]
[--retrained-scores SCORES ...]
[--format-scores results/mini/formats/scores.csv] --out results/mini/claims.md``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

import pandas as pd

from lpe.core.artifacts import read_manifest, read_metadata, write_text
from lpe.core.checks import Check, outcome_of
from lpe.core.selection import NOISE_SE, at_an_end, band, joint_band
from lpe.core.settings import Option, apply_settings
from lpe.formats.names import label, sort_key
from lpe.models.checkpoints import (
    GATE_RISE,
    GATE_TOLERANCE,
    GATE_WINDOW,
    checkpoint_info,
    convergence_gate,
)
from lpe.reports.tabulate import budget_points, final_ensembles, has_shared_memory
from lpe.sources.registry import BY_NAME, family, fast_with_lpe


@dataclass
class Claim:
    number: int
    statement: str
    checks: list[Check]
    note: str = ""
    basis: str = ""  # what the verdict rests on, when it is less than every trained model

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.checks)

    @property
    def verdict(self) -> str:
        """From the decided checks only; "undecided" when every check is within noise."""
        held, failed = self.count("holds"), self.count("fails")
        if held + failed == 0:
            return "undecided (within noise)"
        if failed == 0:
            return "reproduced"
        return "partially reproduced" if held else "not reproduced"

    def markdown(self) -> str:
        held, failed = self.count("holds"), self.count("fails")
        lines = [
            f"## Claim {self.number}: {self.statement}",
            "",
            f"**Verdict: {self.verdict}** ({held} of {held + failed} decided checks hold; "
            f"{self.count('within noise')} within noise)"
            + (f"; it rests on {self.basis}" if self.basis else ""),
            "",
        ]
        lines += [check.markdown() for check in self.checks]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model x precision: FP32, RTN and LPE-BSR NLL with LPE-BSR's noise band, the average
    member loss and AMB (with theirs), and the gain over RTN."""
    runs = final_ensembles(scores)
    rows = []
    models = runs.sort_values("params")["model"].unique()
    precisions = sorted((p for p in runs["precision"].unique() if p != "fp32"), key=sort_key)
    for model in models:
        mine = runs[runs["model"] == model]
        fp32 = mine[mine["method"] == "fp32"]["nll"].mean()
        for precision in precisions:
            at = mine[mine["precision"] == precision]
            rtn, bsr = at[at["method"] == "rtn"], at[at["method"] == "lpe-bsr"]
            if rtn.empty or bsr.empty:
                continue
            n = len(bsr)
            calibrated = "nll_ts" in runs and bsr["nll_ts"].notna().all()
            fp32_rows = mine[mine["method"] == "fp32"]
            rows.append(
                {
                    "model": model,
                    "params": int(mine["params"].iloc[0]),
                    "precision": precision,
                    "fp32": fp32,
                    "rtn": rtn["nll"].mean(),
                    "bsr": bsr["nll"].mean(),
                    "bsr_std": _sd(bsr["nll"]),
                    "bsr_band": band(_sd(bsr["nll"]), n),
                    "bsr_avg_loss": bsr["avg_loss"].mean(),
                    "avg_loss_band": band(_sd(bsr["avg_loss"]), n),
                    "bsr_amb": bsr["ambiguity"].mean(),
                    "members": int(bsr["members"].iloc[0]),
                    "seeds": sorted(bsr["seed"].unique().tolist()),
                    # the temperature-scaling control (lpe.evaluation.temperature); NaN without it
                    "fp32_ts": fp32_rows["nll_ts"].mean() if calibrated else math.nan,
                    "fp32_t": fp32_rows["temperature"].mean() if calibrated else math.nan,
                    "bsr_ts": bsr["nll_ts"].mean() if calibrated else math.nan,
                    "bsr_t": bsr["temperature"].mean() if calibrated else math.nan,
                    "bsr_ts_band": band(_sd(bsr["nll_ts"]), n) if calibrated else 0.0,
                }
            )
    table = pd.DataFrame(rows)
    table["gain"] = table["rtn"] - table["bsr"]
    for name in [*TRAINED_MARGINS, "step"]:  # no retrained model: no training-seed band
        table[f"{name}_train_band"] = 0.0
        # the margins over several trained checkpoints (over_checkpoints): none yet
        table[f"{name}_mean"], table[f"{name}_band"] = math.nan, 0.0
        table[f"{name}_each"] = [() for _ in range(len(table))]
    table["train_seeds"] = 1
    return table


def _precision_step(s: pd.DataFrame) -> pd.Series:
    """Per model: gain at the lowest precision minus gain at the highest (claim 2)."""
    ordered = sorted(s["precision"].unique(), key=sort_key)
    gains = s.pivot(index="model", columns="precision", values="gain")
    return gains[ordered[-1]] - gains[ordered[0]]


# The margins whose spread over training seeds is measured (where the workflow retrains a model
# with other seeds): each is a column expression of a summary() table.
TRAINED_MARGINS = {
    "gain": lambda t: t["gain"],
    "fp32_gap": lambda t: t["fp32"] - t["bsr"],
    "avg_rise": lambda t: t["bsr_avg_loss"] - t["fp32"],
    "avg_vs_rtn": lambda t: t["bsr_avg_loss"] - t["rtn"],
    "ts_gap": lambda t: t["fp32_ts"] - t["bsr"],
    "ts_both": lambda t: t["fp32_ts"] - t["bsr_ts"],
}


def with_training_bands(s: pd.DataFrame, scores: pd.DataFrame, retrained: list[pd.DataFrame]):
    """``s`` plus, per margin of TRAINED_MARGINS, a ``<margin>_train_band`` column: NOISE_SE
    standard deviations of the margin over training seeds (0 where a model was not retrained).

    ``retrained`` holds the scores of Table 1 models retrained with other seeds (one frame per
    retrained copy, one model each). Per model, the spread is taken over its retrained copies and
    the main run, every run with its first BSR seed only (the retrained runs have one), so that it
    measures the checkpoint, not the draws.
    """
    s = s.copy()
    first = scores["seed"][scores["method"] == "lpe-bsr"].min()
    copies: dict[str, list[pd.DataFrame]] = {}
    for frame in retrained:
        copies.setdefault(frame["model"].iloc[0], []).append(frame)
    key = list(zip(s["model"], s["precision"], strict=True))
    for model, frames in copies.items():
        main = scores[(scores["model"] == model)
                      & ((scores["method"] != "lpe-bsr") | (scores["seed"] == first))]  # fmt: skip
        runs = [summary(frame) for frame in [main, *frames]]
        mine = s["model"] == model
        for name, margin in TRAINED_MARGINS.items():
            values = pd.concat([margin(run.set_index(["model", "precision"])) for run in runs],
                               axis=1)  # fmt: skip
            spread = NOISE_SE * values.std(axis=1, ddof=1)
            mine_keys = [k for k, m in zip(key, mine, strict=True) if m]
            s.loc[mine, f"{name}_train_band"] = [float(spread.get(k, 0.0)) for k in mine_keys]
        steps = pd.concat([_precision_step(run) for run in runs], axis=1)
        s.loc[mine, "step_train_band"] = NOISE_SE * steps.loc[model].std(ddof=1)
        s.loc[mine, "train_seeds"] = len(runs)
    return s


CONFIDENCE = 0.975  # one side of a two-sided 95% interval: NOISE_SE = 2 is its normal analogue


def student_factor(checkpoints: int) -> float:
    """Student's t quantile for a mean over ``checkpoints`` values (``checkpoints`` - 1 degrees
    of freedom): 4.30 for 3, 2.78 for 5, 2.45 for 7. NaN for fewer than two."""
    from scipy.stats import t  # imported here: only the claims of a retrained model need it

    return float(t.ppf(CONFIDENCE, checkpoints - 1)) if checkpoints > 1 else math.nan


def over_checkpoints(s: pd.DataFrame, scores: pd.DataFrame, retrained: list[pd.DataFrame]):
    """``s`` with every margin of TRAINED_MARGINS (and claim 2's precision step) decided over all
    the trained checkpoints of a model, where the workflow retrained it (``train_noise``).

    Per model and precision, each checkpoint gives its own paired margin (its FP32, RTN and
    LPE-BSR, the LPE-BSR at its first BSR seed: the retrained copies have one). Added columns:
    ``<margin>_mean`` (the mean over the K checkpoints), ``<margin>_band`` (Student's t with K - 1
    degrees of freedom times the standard error of that mean: it holds the checkpoints' spread
    and one draw's noise each) and ``<margin>_each`` (the K margins, the main run's first). A
    model trained once keeps its one margin, K = 1 and a band of 0: the check then rests on the
    draws' band alone.
    """
    s = with_training_bands(s, scores, retrained)  # train_seeds, and claim 8's old bands
    first = scores["seed"][scores["method"] == "lpe-bsr"].min()
    main = scores[(scores["method"] != "lpe-bsr") | (scores["seed"] == first)]
    copies: dict[str, list[pd.DataFrame]] = {}
    for frame in retrained:
        copies.setdefault(frame["model"].iloc[0], []).append(frame)
    margins = {**TRAINED_MARGINS, "step": None}
    for i, r in enumerate(s.itertuples()):
        runs = [summary(main[main["model"] == r.model]),
                *(summary(frame) for frame in copies.get(r.model, []))]  # fmt: skip
        for name, margin in margins.items():
            if margin is None:  # claim 2's step: gain at the lowest precision - at the highest
                each = [float(_precision_step(run).get(r.model, math.nan)) for run in runs]
            else:
                rows = [run[(run["model"] == r.model) & (run["precision"] == r.precision)]
                        for run in runs]  # fmt: skip
                each = [float(margin(row).iloc[0]) for row in rows if len(row)]
            k = len(each)
            sd = float(pd.Series(each).std(ddof=1)) if k > 1 else 0.0
            s.at[s.index[i], f"{name}_mean"] = float(sum(each) / k) if k else math.nan
            s.at[s.index[i], f"{name}_band"] = (
                student_factor(k) * sd / math.sqrt(k) if k > 1 else 0.0
            )
            s.at[s.index[i], f"{name}_each"] = tuple(each)
    return s


def decided(r, name: str, draws: float, margin: float) -> tuple[float, float]:
    """A check's (margin, band) for row ``r`` of :func:`over_checkpoints`: over the trained
    checkpoints where there are several (their mean; Student's t band combined in quadrature with
    the draws' band ``draws`` of the main run), else the main run's ``margin`` and ``draws``."""
    if len(getattr(r, f"{name}_each")) > 1:
        return getattr(r, f"{name}_mean"), joint_band(getattr(r, f"{name}_band"), draws)
    return margin, draws


def per_checkpoint(r, *names: str) -> str:
    """`` (per checkpoint: +0.00234, ...)`` for a check decided over several checkpoints."""
    parts = [", ".join(f"{v:+.5f}" for v in getattr(r, f"{n}_each")) for n in names
             if len(getattr(r, f"{n}_each")) > 1]  # fmt: skip
    return f" (per checkpoint: {'; '.join(parts)})" if parts else ""


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _gain_checks(s: pd.DataFrame) -> list[Check]:
    """Per row of a summary(): LPE-BSR's NLL gain over RTN, with its band (claim 8's rule: the
    first checkpoint, its band widened by the spread over training seeds)."""
    return [
        Check.of(
            f"{r.model} {label(r.precision)}: LPE-BSR (M={r.members}) NLL {r.bsr:.5f} ± "
            f"{r.bsr_std:.5f} vs RTN {r.rtn:.5f} (gain {r.gain:+.5f})",
            r.gain,
            joint_band(r.bsr_band, r.gain_train_band),
        )
        for r in s.itertuples()
    ]


def _gain_checks_over_checkpoints(s: pd.DataFrame) -> list[Check]:
    """Per row of :func:`over_checkpoints`: LPE-BSR's NLL gain over RTN over the checkpoints."""
    return [
        Check.of(
            f"{r.model} {label(r.precision)}: LPE-BSR (M={r.members}) NLL {r.bsr:.5f} ± "
            f"{r.bsr_std:.5f} vs RTN {r.rtn:.5f} (gain {r.gain:+.5f})" + per_checkpoint(r, "gain"),
            *decided(r, "gain", r.bsr_band, r.gain),
        )
        for r in s.itertuples()
    ]


def claim1(s: pd.DataFrame) -> Claim:
    return Claim(
        1,
        "LPE-BSR beats RTN in NLL at the same precision, for every model size.",
        _gain_checks_over_checkpoints(s),
    )


def claim8(s: pd.DataFrame) -> Claim:
    """The paper's outlook, tested here: claim 1 in every number format, not only INT-b."""
    checks = _gain_checks(s)
    families = {}
    for precision in s["precision"].unique():
        held = [c.outcome for c, p in zip(checks, s["precision"], strict=True) if p == precision]
        families[label(precision)] = f"{held.count('holds')}/{len(held)}"
    note = (
        "Not a claim of the paper: its outlook (LPE in other low precision number systems), "
        "made here. Each format's members are made as INT-b's are (the two neighbouring "
        "representable values, each with the probability that keeps the expectation; "
        "lpe.formats.registry), at the same ensemble size and seeds. The training-seed band "
        "applies to the INT-b of Table 1 only, where it is measured. Checks that hold, per format: "
        + ", ".join(f"{name} {count}" for name, count in families.items())
        + "."
    )
    return Claim(
        8,
        "(outlook) LPE-BSR beats RTN in NLL in every number format (FP8, FP6, FP4, NF4, MX), "
        "not only INT-b.",
        checks,
        note,
    )


def claim2(s: pd.DataFrame) -> Claim:
    checks = []
    for precision, at in s.groupby("precision", sort=False):
        at = at.sort_values("params")
        gains = [decided(r, "gain", r.bsr_band, r.gain) for r in at.itertuples()]
        listed = ", ".join(f"{r.model} {g:+.5f}" for r, (g, _) in zip(at.itertuples(), gains,
                                                                        strict=True))  # fmt: skip
        steps = [(b - a, joint_band(band_a, band_b))
                 for (a, band_a), (b, band_b) in zip(gains, gains[1:], strict=False)]  # fmt: skip
        checks.append(Check(f"{precision.upper()}: gain grows with model size ({listed})",
                            tuple(steps)))  # fmt: skip
    ordered = sorted(s["precision"].unique(), key=sort_key)
    high, low = ordered[0], ordered[-1]
    for model, mine in s.groupby("model", sort=False):
        g = mine.set_index("precision")
        r = next(mine[mine["precision"] == low].itertuples())
        checks.append(
            Check.of(
                f"{model}: gain at {low.upper()} {g.gain[low]:+.5f} > at {high.upper()} "
                f"{g.gain[high]:+.5f}" + per_checkpoint(r, "step"),
                *decided(r, "step", joint_band(g.bsr_band[low], g.bsr_band[high]),
                         g.gain[low] - g.gain[high]),
            )
        )  # fmt: skip
    note = (
        "Gain = NLL(RTN) - NLL(LPE-BSR), absolute; the gains listed are the main run's, the "
        "margins those over the trained checkpoints (see the head of the report). A size check "
        "has one margin per step from a model to the next larger one: it holds when the gain "
        "grows at every step."
    )
    return Claim(
        2, "The LPE-BSR gain over RTN grows with model size and as precision drops.", checks, note
    )


def claim3(s: pd.DataFrame) -> Claim:
    checks = [
        Check(
            f"{r.model} {r.precision.upper()}: LPE-BSR (M={r.members}) NLL {r.bsr:.5f} vs FP32 "
            f"{r.fp32:.5f}; average member loss {r.bsr_avg_loss:.5f}, ambiguity {r.bsr_amb:.5f}"
            + per_checkpoint(r, "fp32_gap", "avg_rise"),
            (
                decided(r, "fp32_gap", r.bsr_band, r.fp32 - r.bsr),
                decided(r, "avg_rise", r.avg_loss_band, r.bsr_avg_loss - r.fp32),
            ),
        )
        for r in s.itertuples()
    ]
    note = (
        "Two margins per check: FP32 - LPE-BSR (the ensemble is better) and average member loss "
        "- FP32 (each member is worse)."
    )
    return Claim(
        3,
        "A large enough LPE-BSR ensemble beats the FP32 model in NLL although each "
        "member is worse.",
        checks,
        note,
    )


def claim9(s: pd.DataFrame) -> Claim:
    """The calibration control of claim 3 (beyond the paper): is LPE-BSR's gain over FP32 more
    than one temperature buys?"""
    checks = []
    for r in s.itertuples():
        where = f"{r.model} {label(r.precision)}"
        fp32 = f"temperature-scaled FP32 {r.fp32_ts:.5f} (T = {r.fp32_t:.3f})"
        checks.append(Check.of(
            f"{where}: LPE-BSR (M={r.members}) NLL {r.bsr:.5f} vs {fp32}"
            + per_checkpoint(r, "ts_gap"),
            *decided(r, "ts_gap", r.bsr_band, r.fp32_ts - r.bsr),
        ))  # fmt: skip
        checks.append(Check.of(
            f"{where}: temperature-scaled LPE-BSR (M={r.members}) NLL {r.bsr_ts:.5f} (T = "
            f"{r.bsr_t:.3f}) vs {fp32}" + per_checkpoint(r, "ts_both"),
            *decided(r, "ts_both", r.bsr_ts_band, r.fp32_ts - r.bsr_ts),
        ))  # fmt: skip
    note = (
        "The control a reviewer asks of claim 3: part of an ensemble's NLL gain is often what one "
        "temperature buys. Each temperature is fit on the validation split (NLL, "
        "lpe.evaluation.temperature; one for the FP32 model, one per LPE-BSR ensemble on its "
        "averaged probabilities), never on the test split. The first check of each row asks "
        "whether LPE-BSR beats the temperature-scaled FP32 model; the second whether it still does "
        "once it is temperature-scaled too. Both are beyond the paper, which compares uncalibrated "
        "models."
    )
    return Claim(
        9,
        "(control of claim 3, beyond the paper) LPE-BSR's NLL gain over FP32 is more than "
        "calibration: it beats the temperature-scaled FP32 model, also when it is "
        "temperature-scaled itself.",
        checks,
        note,
    )


COMPETITIVE = 0.01  # claim 4's "competitive": NLL at most 1% above BMA's (fixed, not tuned)


def _mean_band(rows: pd.DataFrame, metric: str = "nll") -> tuple[float, float, float]:
    """Mean, sd and noise band of ``metric`` over the rows (one per seed)."""
    sd = _sd(rows[metric])
    return float(rows[metric].mean()), sd, band(sd, len(rows))


def claim4(bma_scores: pd.DataFrame, bits: int, hessian: dict[str, float] | None = None) -> Claim:
    """LPE-BSR around SWAG's and IVON's solutions against their BMA, by size and by memory."""
    checks = []
    for optimizer in ("swag", "ivon"):
        run = bma_scores[bma_scores["optimizer"] == optimizer]
        lpe = run[(run["method"] == "lpe-bsr") & (run["precision"] == f"int{bits}")]
        bma = run[run["method"] == f"{optimizer}-bma"]
        if lpe.empty or bma.empty:
            checks.append(Check(f"{optimizer}: no LPE-BSR INT-{bits} or BMA scores", ()))
            continue
        size = int(min(lpe["members"].max(), bma["members"].max()))
        lpe_nll, lpe_sd, lpe_band = _mean_band(lpe[lpe["members"] == size])
        bma_nll, bma_sd, bma_band = _mean_band(bma[bma["members"] == size])
        checks.append(
            Check.of(
                f"{optimizer.upper()}, equal size M={size}: LPE-BSR INT-{bits} NLL {lpe_nll:.5f} "
                f"± {lpe_sd:.5f} vs BMA {bma_nll:.5f} ± {bma_sd:.5f} "
                f"({100 * (lpe_nll / bma_nll - 1):+.2f}%)",
                (1 + COMPETITIVE) * bma_nll - lpe_nll,
                joint_band(lpe_band, bma_band),
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
                f"{optimizer.upper()}, equal memory: LPE-BSR INT-{bits} M={full} "
                f"({budget / 8e6:.2f} MB) NLL {lpe_nll:.5f} ± {lpe_sd:.5f} vs BMA M={m} "
                f"({bma_bits / 8e6:.2f} MB) NLL {bma_nll:.5f} ± {bma_sd:.5f}",
                bma_nll - lpe_nll,
                joint_band(lpe_band, bma_band),
            )
        )
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
    return Claim(
        4,
        "LPE-BSR around a solution is competitive with SWAG and IVON BMA at equal ensemble "
        "size, and better at equal memory budget.",
        checks,
        note,
        basis="one fine-tuning run per optimizer",
    )


def claim6(baseline_scores: pd.DataFrame, chosen: str = "") -> Claim:
    """LPE-BSR against the Gaussian-noise and MC-dropout ensembles, at each one's largest size;
    LPE-BSR at the one precision the baselines stage chose on validation."""
    runs = final_ensembles(baseline_scores)
    lpe = runs[runs["method"] == "lpe-bsr"]
    if lpe["precision"].nunique() > 1:
        listed = sorted(lpe["precision"].unique())
        raise ValueError(f"baselines/scores.csv has LPE-BSR at {listed}; expected the one chosen")
    bits = lpe["precision"].iloc[0].removeprefix("int") if len(lpe) else "?"
    checks = []
    for method, name in BASELINE_NAMES.items():
        other = runs[runs["method"] == method]
        if other.empty:
            continue
        if lpe.empty:
            checks.append(Check(f"no LPE-BSR INT-{bits} scores to compare with {name}", ()))
            continue
        (lpe_nll, lpe_sd, lpe_band) = _mean_band(lpe)
        (other_nll, other_sd, other_band) = _mean_band(other)
        checks.append(
            Check.of(
                f"{lpe['model'].iloc[0]}: LPE-BSR INT-{bits} (M={int(lpe['members'].max())}) NLL "
                f"{lpe_nll:.5f} ± {lpe_sd:.5f} vs {name} (M={int(other['members'].max())}) "
                f"{other_nll:.5f} ± {other_sd:.5f}",
                other_nll - lpe_nll,
                joint_band(lpe_band, other_band),
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
        6, "LPE-BSR is better than the training-free Gaussian-noise and MC-dropout baselines.",
        checks, note, basis="one trained model (the first checkpoint of baselines.model)",
    )  # fmt: skip


BASELINE_NAMES = {s.name: s.label for s in family("baseline")}  # lpe.sources.registry
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
    checkpoints: list[pd.DataFrame], members: int, bits: int
) -> tuple[dict[str, float], str]:
    """Claim 5's checkpoint band: per metric (NLL, ECE), NOISE_SE standard deviations over
    trained checkpoints of one model (``checkpoints``: each one's scores, FP32 and LPE-BSR
    INT-``bits`` at its first seed; the workflow's ``fast/checkpoints/``: the fast ensembles'
    starting model and its ``train_noise`` copies) of LPE-BSR's gain over FP32 at ``members``
    members, the one-source analogue of "a source with its LPE-BSR copies". The fast ensembles
    all start from one checkpoint, so their margins move with it, which their seeds cannot see.
    Returns ({}, "") for fewer than two checkpoints.
    """
    if len(checkpoints) < 2:
        return {}, ""
    precision = f"int{bits}"
    spreads = {}
    for metric in ("nll", "ece"):
        gains = []
        for run in checkpoints:
            first = run.loc[run["method"] == "lpe-bsr", "seed"].min()
            bsr = run[(run["method"] == "lpe-bsr") & (run["precision"] == precision)
                      & (run["seed"] == first) & (run["members"] == members)]  # fmt: skip
            if bsr.empty:
                raise ValueError(f"a checkpoint's scores have no LPE-BSR {precision} ensemble of "
                                 f"{members} members (claim 5's copies per source)")  # fmt: skip
            gains.append(run.loc[run["method"] == "fp32", metric].iloc[0] - bsr[metric].iloc[0])
        spreads[metric] = NOISE_SE * float(pd.Series(gains).std(ddof=1))
    text = (
        f"Each budget's band also holds the starting checkpoint: {NOISE_SE:g} standard "
        f"deviations over {len(checkpoints)} trained checkpoints of the starting model "
        f"(train_noise) of LPE-BSR INT-{bits}'s gain over FP32 at {members} members, in "
        f"quadrature: NLL ±{spreads['nll']:.5f}, ECE ±{spreads['ece']:.5f}."
    )
    return spreads, text


def claim5(
    fast_scores: pd.DataFrame,
    bits: int,
    rates: str = "",
    checkpoint: tuple[dict[str, float], str] = ({}, ""),
) -> Claim:
    """Per method and metric: does adding LPE-BSR help at every training budget?

    ``checkpoint`` is :func:`checkpoint_spread`'s band per metric and its sentence: added in
    quadrature to every budget's band (none when empty: the bands cover the draws only).
    """
    spreads, spread_text = checkpoint
    checks = []
    for method, name in FAST_NAMES.items():
        alone = budget_points(fast_scores, method).set_index("backward_passes")
        copies = budget_points(fast_scores, f"{method}+lpe-bsr").groupby("backward_passes")
        if alone.empty or not len(copies):
            continue
        for metric in ("nll", "ece"):
            with_lpe = copies[metric].mean()
            draws = copies[metric].std().fillna(0.0) * NOISE_SE / copies[metric].count() ** 0.5
            bands = (draws**2 + spreads.get(metric, 0.0) ** 2) ** 0.5
            margins = alone[metric] - with_lpe
            last = alone.index.max()
            parts = tuple(zip(margins.tolist(), bands.reindex(margins.index).tolist(),
                              strict=True))  # fmt: skip
            better = sum(outcome_of(m, b) == "holds" for m, b in parts)
            checks.append(
                Check(
                    f"{name} {metric.upper()}: + LPE-BSR INT-{bits} better at {better} of "
                    f"{len(parts)} training budgets; with all {int(alone.loc[last, 'members'])}"
                    f" sources {alone.loc[last, metric]:.5f} alone vs {with_lpe[last]:.5f} with "
                    f"LPE-BSR ({int(copies['members'].max()[last])} members)",
                    parts,
                )
            )
    note = (
        "A training budget is the backward passes spent when the first c snapshots, samples or "
        "runs exist (c = 1..K); LPE-BSR adds none. One margin per budget (source alone - with "
        "LPE-BSR, mean over LPE-BSR seeds): a check holds when LPE-BSR helps at every budget. "
        "The copies cost memory: k INT-b members per source. "
        + (spread_text or "The bands cover the draws only: the starting model was not "
           "retrained (train_noise).")
    )  # fmt: skip
    if rates:
        note += f" Chosen on the validation split from the configured candidates: {rates}."
    return Claim(5, "Adding LPE-BSR to SSE, CSGLD, DE or MultiIVON improves NLL/ECE at equal "
                 "training budget.", checks, note,
                 basis="one training run per fast method")  # fmt: skip


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
        found.append(f"{model} {label(precision)}: {fit}")
    return found


def claim10(scores: pd.DataFrame, bma_scores: pd.DataFrame | None, bits: int,
            fast_scores: pd.DataFrame | None, fast_bits: int) -> Claim:  # fmt: skip
    """Beyond the paper: LPE-BSR stored as one shared base, at equal memory."""
    checks = []
    if bma_scores is not None:
        for optimizer in ("swag", "ivon"):
            run = bma_scores[bma_scores["optimizer"] == optimizer]
            lpe = run[(run["method"] == "lpe-bsr") & (run["precision"] == f"int{bits}")]
            bma = run[run["method"] == f"{optimizer}-bma"]
            if len(lpe) and len(bma) and has_shared_memory(lpe):
                checks.append(_at_shared_memory(f"{optimizer.upper()} BMA", lpe, bma,
                                                f"LPE-BSR INT-{bits}"))  # fmt: skip
    if fast_scores is not None:
        lpe = fast_scores[(fast_scores["method"] == "lpe-bsr")
                          & (fast_scores["precision"] == f"int{fast_bits}")]  # fmt: skip
        around = f"LPE-BSR INT-{fast_bits} (SGD solution)"
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
        + (f"LPE-BSR members that fit in one FP32 model's memory: {'; '.join(fit)}." if fit
           else "")
    )  # fmt: skip
    return Claim(10, "(beyond the paper) Stored as one shared base, an LPE-BSR ensemble beats "
                 "the largest BMA, SSE, CSGLD, DE or MultiIVON ensemble that fits in its "
                 "memory.", checks, note,
                 basis="one fine-tuning or training run per method")  # fmt: skip


def copies_per_source(fast_scores: pd.DataFrame) -> int:
    """k, the LPE-BSR copies of each fast source: the members with LPE-BSR at the first budget
    (one source) of any method."""
    method = next(m for m in fast_scores["method"].unique() if m.endswith("+lpe-bsr"))
    points = budget_points(fast_scores, method)
    return int(points.loc[points["backward_passes"].idxmin(), "members"])


def claim7(s: pd.DataFrame) -> Claim:
    """The gain over RTN is ambiguity: the members alone are no better than RTN."""
    checks = [
        Check.of(
            f"{r.model} {r.precision.upper()}: RTN {r.rtn:.5f}, LPE-BSR members' average loss "
            f"{r.bsr_avg_loss:.5f} ({r.bsr_avg_loss - r.rtn:+.5f}), AMB {r.bsr_amb:.5f}, "
            f"ensemble {r.bsr:.5f} (gain over RTN {r.gain:+.5f} = "
            f"{r.rtn - r.bsr_avg_loss:+.5f} from the members + {r.bsr_amb:.5f} AMB)"
            + per_checkpoint(r, "avg_vs_rtn"),
            *decided(r, "avg_vs_rtn", r.avg_loss_band, r.bsr_avg_loss - r.rtn),
        )
        for r in s.itertuples()
    ]
    note = (
        "Gain over RTN = (RTN loss - average member loss) + AMB. A check holds when the "
        "LPE-BSR members are on average worse than the RTN model (margin: average member loss - "
        "RTN loss), so that all of LPE-BSR's gain over RTN, where there is one, comes from "
        "ambiguity: the members disagree in ways that averaging turns into a better prediction."
    )
    return Claim(7, "The gain of LPE-BSR over RTN comes from ambiguity, not from better "
                 "members.", checks, note)  # fmt: skip


CHOICE_NAMES = {"bsr": "LPE-BSR INT-{:g}", "gaussian": "noise scale {:g}",
                "dropout": "dropout rate {:g}"}  # fmt: skip


def choices_text(paths: list[str]) -> str:
    """The settings the baselines stage chose on validation, e.g. ``LPE-BSR INT-5, ...``."""
    chosen = []
    for path in paths:
        choice = json.loads(open(path).read())
        if choice["method"] in CHOICE_NAMES:
            setting = float(choice["setting"])
            edge = at_an_end(setting, choice.get("candidates", []))
            chosen.append(CHOICE_NAMES[choice["method"]].format(setting)
                          + (" (an end of its candidates)" if edge else ""))  # fmt: skip
    return ", ".join(chosen)


def gate_section(checkpoints: list[str]) -> tuple[str, list[str]]:
    """The convergence gate of each Table 1 model: a Markdown section and the failing models."""
    rows, failing = [], []
    for path in checkpoints:
        info = checkpoint_info(path)
        gain, rise, passed = convergence_gate(path)
        rows.append(f"| {info.model} | {-100 * gain:+.2f}% | {100 * rise:+.2f}% | "
                    f"{'passes' if passed else 'FAILS'} |")  # fmt: skip
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
        lines += ["", f"**GATE FAILED for {', '.join(failing)}: the claims on these models are "
                  "about models either still improving (train longer: train.epochs) or trained "
                  "far past their best (train shorter), not the paper's well-trained "
                  "ones.**"]  # fmt: skip
    return "\n".join(lines) + "\n", failing


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
        + (f"; {', '.join(others)} trained once, their bands cover the draws only" if others
           else "")
        + ". Claim 8's checks are on the first trained model (its formats are not retrained), "
        f"their bands widened by {NOISE_SE:g} standard deviations of the INT-b margins over the "
        "trained models. Claim 5's bands also hold the spread of its starting checkpoint (see "
        "its note). Claims 4, 5, 6 and 10 rest on one fine-tuning or training run per method "
        "(their verdict lines say so): retraining those is beyond the mini budget."
    )  # fmt: skip


def report(
    scores: pd.DataFrame,
    bma_scores: pd.DataFrame | None = None,
    bits: int = 5,
    baseline_scores: pd.DataFrame | None = None,
    fast_scores: pd.DataFrame | None = None,
    fast_bits: int = 5,
    checkpoints: list[str] = (),
    hessian: dict[str, float] | None = None,
    chosen: str = "",
    retrained: list[pd.DataFrame] = (),
    rates: str = "",
    format_scores: pd.DataFrame | None = None,
    fast_checkpoints: list[pd.DataFrame] = (),
) -> str:
    s = over_checkpoints(summary(scores), scores, list(retrained))
    claims = [claim1(s), claim2(s), claim3(s)]
    if bma_scores is not None:
        claims.append(claim4(bma_scores, bits, hessian))
    if fast_scores is not None:
        spread = (checkpoint_spread(list(fast_checkpoints), copies_per_source(fast_scores),
                                    fast_bits) if fast_checkpoints else ({}, ""))  # fmt: skip
        claims.append(claim5(fast_scores, fast_bits, rates, spread))
    if baseline_scores is not None:
        claims.append(claim6(baseline_scores, chosen))
    claims.append(claim7(s))
    if format_scores is not None:
        formats = with_training_bands(summary(format_scores), scores, list(retrained))
        claims.append(claim8(formats))
    if s["fp32_ts"].notna().all():
        claims.append(claim9(s))
    if has_shared_memory(scores):
        claims.append(claim10(scores, bma_scores, bits, fast_scores, fast_bits))
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
        "| claim | verdict | decided checks that hold | within noise |",
        "|---|---|---:|---:|",
    ]
    head += [
        f"| {c.number} | {c.verdict} | {c.count('holds')} of "
        f"{c.count('holds') + c.count('fails')} | {c.count('within noise')} |"
        for c in claims
    ]
    gate = ""
    if checkpoints:
        gate, failing = gate_section(list(checkpoints))
        if failing:
            head[2:2] = [f"**Convergence gate FAILED for {', '.join(failing)}** (see below).", ""]
    return "\n".join(head) + "\n\n" + gate + "\n" + "\n".join(c.markdown() for c in claims)


# The precisions of claims 4 and 5 from the config (lpe.core.settings); the formats' scores, when
# the config has a formats section with models (job.format_scores, else none)
CLAIMS_SETTINGS = {
    "bma.bits": Option("bma_bits", lambda bits: bits[0]),
    "fast.bits": "fast_bits",
    "job.format_scores": "format_scores",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--checkpoints", nargs="*", default=[],
                        help="Table 1's checkpoints, for the convergence gate")  # fmt: skip
    parser.add_argument("--bma-scores", help="bma/scores.csv, for claim 4")
    parser.add_argument("--bma-bits", type=int, default=5, help="LPE-BSR precision of claim 4")
    parser.add_argument("--ivon-posterior", help="IVON's posterior file: how far it moved")
    parser.add_argument("--baseline-scores", help="baselines/scores.csv, for claim 6")
    parser.add_argument(
        "--baseline-choices",
        nargs="*",
        default=[],
        help="the baselines' choice files (settings chosen on validation)",
    )
    parser.add_argument("--fast-scores", help="fast/scores.csv, for claim 5")
    parser.add_argument("--fast-sources", nargs="*", default=[],
                        help="sources folders whose peak rate was chosen (SSE, CSGLD)")  # fmt: skip
    parser.add_argument("--retrained-scores", nargs="*", default=[],
                        help="scores of one Table 1 model retrained with other seeds")  # fmt: skip
    parser.add_argument("--fast-bits", type=int, default=5, help="precision of claim 5")
    parser.add_argument("--fast-checkpoint-scores", nargs="*", default=[],
                        help="scores (FP32, LPE-BSR) of each trained checkpoint of the fast "
                        "ensembles' starting model: claim 5's checkpoint band")  # fmt: skip
    parser.add_argument("--format-scores", help="formats/scores.csv, for claim 8 (the outlook)")
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
        pd.read_csv(args.scores), bma, args.bma_bits, baselines, fast, args.fast_bits,
        args.checkpoints, hessian, choices_text(args.baseline_choices),
        [pd.read_csv(p) for p in args.retrained_scores], rate_choices(args.fast_sources),
        pd.read_csv(args.format_scores) if args.format_scores else None,
        [pd.read_csv(p) for p in args.fast_checkpoint_scores],
    )  # fmt: skip
    write_text(args.out, text)
    print(text)
    if "GATE FAILED" in text:
        print("WARNING: the convergence gate failed; see the claims report", file=sys.stderr)


if __name__ == "__main__":
    main()
