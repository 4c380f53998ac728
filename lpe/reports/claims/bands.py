"""The scores summarised per model and precision, and the noise bands of the claims' checks:
over the ensemble seeds, over the trained checkpoints of a retrained model (Student's t), and
combined."""

from __future__ import annotations

import math

import pandas as pd

from lpe.core.checks import Check
from lpe.core.selection import NOISE_SE, band, joint_band
from lpe.formats.names import sort_key
from lpe.reports.tabulate import final_ensembles


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
        main = scores[
            (scores["model"] == model)
            & ((scores["method"] != "lpe-bsr") | (scores["seed"] == first))
        ]
        runs = [summary(frame) for frame in [main, *frames]]
        mine = s["model"] == model
        for name, margin in TRAINED_MARGINS.items():
            values = pd.concat(
                [margin(run.set_index(["model", "precision"])) for run in runs], axis=1
            )
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
        runs = [
            summary(main[main["model"] == r.model]),
            *(summary(frame) for frame in copies.get(r.model, [])),
        ]
        for name, margin in margins.items():
            if margin is None:  # claim 2's step: gain at the lowest precision - at the highest
                each = [float(_precision_step(run).get(r.model, math.nan)) for run in runs]
            else:
                rows = [
                    run[(run["model"] == r.model) & (run["precision"] == r.precision)]
                    for run in runs
                ]
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


def checkpoints_check(
    r, text: str, name: str, draws: float, margin: float, part: str = ""
) -> Check:
    """A check of row ``r`` decided by :func:`decided` (over the trained checkpoints where there
    are several), its text followed by each checkpoint's margin (:func:`per_checkpoint`)."""
    return Check.of(text + per_checkpoint(r, name), *decided(r, name, draws, margin), part)


def per_checkpoint(r, *names: str) -> str:
    """`` (per checkpoint: +0.00234, ...)`` for a check decided over several checkpoints."""
    parts = [
        ", ".join(f"{v:+.5f}" for v in getattr(r, f"{n}_each"))
        for n in names
        if len(getattr(r, f"{n}_each")) > 1
    ]
    return f" (per checkpoint: {'; '.join(parts)})" if parts else ""


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _mean_band(rows: pd.DataFrame, metric: str = "nll") -> tuple[float, float, float]:
    """Mean, sd and noise band of ``metric`` over the rows (one per seed)."""
    sd = _sd(rows[metric])
    return float(rows[metric].mean()), sd, band(sd, len(rows))
