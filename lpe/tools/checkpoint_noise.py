"""The checkpoint's own noise, measured from the suite's retrained models, as noise units.

Another CPU rounds the training's sums in another order, and a model trained there is another
draw of the checkpoint: ``vit_mini_b``'s FP32 test NLL moved from 0.2338 to 0.2549 between an
Intel and an AMD machine at bd77013, as far as another training seed moves it. So every number
downstream of a trained model carries the checkpoint's spread, and the regeneration check in
noise mode (``lpe.tools.compare``) needs it as a unit. The suite measures it: the mini profile
retrains every Table 1 model with other training seeds (``train_noise``), and the runs' scores
(``<top>/scores.csv`` for the main run, ``<top>/train_noise/<model>-trainseed<k>/scores.csv``
for the others) score the same rows on each checkpoint. Per model:

- ``cells``: per scored row (model, precision, method, members, ...) and metric, the sd over
  the training runs (the main run's first BSR seed, as the retrained runs have one);
- ``columns``: per metric, the median of those sds (for a row of another file);
- ``relative``: the median over rows of the FP32-scale metrics' sd / |mean|: the unit of a number
  whose metric is not known, as a fraction of itself (and, times 100, of a percentage);
- ``difference``: the median over rows of the sd over runs of (row NLL - the same run's FP32
  NLL): the unit of a gain or margin, a difference of two numbers of one checkpoint.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("nll", "err", "ece", "brier", "avg_loss", "ambiguity", "ens_loss")
RELATIVE_METRICS = ("nll", "err", "brier")  # far from zero: their relative spread is stable
# The reference holds one draw of each checkpoint and a regeneration another: their difference
# has sqrt(2) times the sd of one draw.
TWO_DRAWS = math.sqrt(2)
RETRAINED = re.compile(r"(?P<model>.+)-trainseed(?P<seed>\d+)$")


@dataclass
class ModelNoise:
    runs: int
    cells: dict[tuple, dict[str, float]] = field(default_factory=dict)
    columns: dict[str, float] = field(default_factory=dict)
    relative: float = 0.0
    difference: float = 0.0


def row_key(row: pd.Series, text_columns: list[str]) -> tuple:
    """A scored row's name: its text columns and its ensemble size (the seed aside)."""
    return tuple(str(row[c]) for c in text_columns) + (int(row.get("members", 1)),)


def _first_seed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per scored configuration: a BSR row at its first seed, other rows as they are."""
    bsr = frame["method"].str.contains("lpe-bsr")
    first = frame.loc[bsr, "seed"].min() if bsr.any() else 0
    return frame[~bsr | (frame["seed"] == first)]


def _measure_model(runs: list[pd.DataFrame]) -> ModelNoise:
    text = [c for c in runs[0].columns if not pd.api.types.is_numeric_dtype(runs[0][c])]
    metrics = [m for m in METRICS if m in runs[0].columns]
    keyed = []
    for run in runs:
        run = _first_seed_rows(run)
        fp32 = run[run["method"] == "fp32"]["nll"]
        base = float(fp32.iloc[0]) if len(fp32) else math.nan
        keyed.append(
            {
                row_key(r, text): {**{m: float(r[m]) for m in metrics}, "_gain": r["nll"] - base}
                for _, r in run.iterrows()
            }
        )
    common = set(keyed[0]).intersection(*keyed[1:])
    noise = ModelNoise(runs=len(runs))
    relative, difference = [], []
    for key in sorted(common):
        values = {m: np.array([k[key][m] for k in keyed]) for m in [*metrics, "_gain"]}
        noise.cells[key] = {m: float(values[m].std(ddof=1)) for m in metrics}
        relative += [
            values[m].std(ddof=1) / abs(values[m].mean())
            for m in RELATIVE_METRICS
            if m in values and values[m].mean() != 0
        ]
        if key[text.index("method")] != "fp32":
            difference.append(values["_gain"].std(ddof=1))
    # a metric's typical spread, over the rows where it is not identically zero (a single
    # model's ambiguity is 0 on every checkpoint: no spread to learn from)
    varying = {
        m: [noise.cells[k][m] for k in common if any(run[k][m] != 0 for run in keyed)]
        for m in metrics
    }
    noise.columns = {m: float(np.median(v)) for m, v in varying.items() if v}
    noise.relative = float(np.nanmedian(relative)) if relative else 0.0
    noise.difference = float(np.nanmedian(difference)) if difference else 0.0
    return noise


def measure(root: Path, tops: list[str]) -> dict[str, ModelNoise]:
    """Per retrained model: its checkpoint noise, from the scores of its training runs.

    Models without a retrained copy under ``root`` get none (their numbers fall back to the
    largest unit measured; see ``Units``)."""
    noise: dict[str, ModelNoise] = {}
    for top in tops:
        main_path = root / top / "scores.csv"
        if not main_path.is_file():
            continue
        main = pd.read_csv(main_path)
        retrained: dict[str, list[pd.DataFrame]] = {}
        for path in sorted((root / top / "train_noise").glob("*/scores.csv")):
            match = RETRAINED.match(path.parent.name)
            if match:
                retrained.setdefault(match["model"], []).append(pd.read_csv(path))
        for model, frames in retrained.items():
            mine = main[main["model"] == model]
            if len(mine):
                noise[model] = _measure_model([mine, *frames])
    return noise


def _pooled(values: list[float]) -> float:
    """The pooled sd of several models' sds (equal degrees of freedom): their RMS."""
    return float(np.sqrt(np.mean(np.square(values)))) if values else 0.0


class Units:
    """The checkpoint part of a number's noise unit in ``lpe.tools.compare``'s noise mode.

    A number is attributed to the models its row or line names; a row or line that names none
    (a BMA figure's grid, a LaTeX table that writes ViT-T) to every measured model, and so takes
    the largest unit: every result of the mini profile is downstream of some trained model.

    A model's unit is at least the one pooled over the measured models: an sd over 3 training
    runs has 2 degrees of freedom (a 95% interval of 0.52 to 6.3 times the true sd), the sizes
    share the recipe and the data, and pooling the 4 sizes gives 8. At bd77013, ``vit_mini_l``'s
    FP32 NLL moved 0.0065 between two CPUs; its own sd over 3 best-epoch runs is 0.0028."""

    def __init__(self, noise: dict[str, ModelNoise]):
        self.noise = noise
        self.names = re.compile("|".join(map(re.escape, sorted(noise, key=len, reverse=True))))
        every = list(noise.values())
        columns = {c for n in every for c in n.columns}
        self.pooled = ModelNoise(
            runs=sum(n.runs for n in every),  # the pooled estimate's training runs
            columns={c: _pooled([n.columns[c] for n in every if c in n.columns]) for c in columns},
            relative=_pooled([n.relative for n in every]),
            difference=_pooled([n.difference for n in every]),
        )

    def models(self, text: str) -> list[ModelNoise]:
        named = set(self.names.findall(text)) if self.noise else set()
        return [self.noise[m] for m in named] or list(self.noise.values())

    def _relative(self, noise: ModelNoise) -> float:
        return max(noise.relative, self.pooled.relative)

    def _difference(self, noise: ModelNoise) -> float:
        return max(noise.difference, self.pooled.difference)

    def cell(self, models: list[ModelNoise], key: tuple, column: str, value: float) -> float:
        """A CSV cell: the row's measured training spread (else its metric's), at least the
        pooled one and the relative spread times the value; a relative change (``gate_*``) the
        relative spread; any other number as in text. ``<metric>_mean`` is its metric."""
        metric = column.removesuffix("_mean")
        units = []
        for noise in models:
            if metric in noise.columns:
                own = noise.cells.get(key, {}).get(metric, noise.columns[metric])
                scaled = self._relative(noise) * abs(value)  # a row unlike the measured ones
                units.append(max(own, self.pooled.columns[metric], scaled))
            elif column.startswith("gate_"):
                units.append(self._relative(noise))
            else:
                units.append(self._relative(noise) * abs(value) + self._difference(noise))
        return TWO_DRAWS * max(units, default=0.0)

    def text(self, models: list[ModelNoise], value: float, percent: bool) -> float:
        """A number in text: relative to itself (a percentage: relative x 100), plus the spread
        of a difference, so that a gain or margin near zero keeps a unit."""
        return TWO_DRAWS * max(
            (
                100 * self._relative(n)
                if percent
                else self._relative(n) * abs(value) + self._difference(n)
                for n in models
            ),
            default=0.0,
        )

    def margin(self, models: list[ModelNoise]) -> float:
        """A claim check's margin: a difference of two numbers of one checkpoint (one draw:
        the margin is judged against zero, not against the other draw)."""
        return max((self._difference(n) for n in models), default=0.0)

    def summary(self) -> str:
        return "; ".join(
            f"{m} ({n.runs} runs): relative {n.relative:.3g}, difference {n.difference:.3g}, "
            f"nll {n.columns.get('nll', math.nan):.3g}"
            for m, n in sorted(self.noise.items())
        ) + (
            f"; pooled: relative {self.pooled.relative:.3g}, difference "
            f"{self.pooled.difference:.3g}, nll {self.pooled.columns.get('nll', math.nan):.3g}"
            if self.noise
            else ""
        )
