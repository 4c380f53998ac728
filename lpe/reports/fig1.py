"""Figure 1 from a real computation: RTN's single grid point against LPE-BSR's cloud of them.

A two-weight logistic model (no bias) separates two MNIST-1D classes from two features of the
signal (the means of its first and second halves, standardised), trained to convergence by
full-batch L-BFGS on a slice of the training split. Around its weights ``w`` the figure shows:
the loss contours, the INT-b grid, the RTN pick and ``draws`` BSR draws, each grid point's marker
sized by how often it was drawn (with the Bernoulli probability it should have).

The grid scale is ``range x max|w| / qmax``: as if the two weights belonged to a layer whose
largest weight is ``range`` times theirs. With the two weights alone (``range = 1``), absmax
scaling puts the larger one exactly on the grid and BSR could only move the other.

Outputs: the figure (png, pdf) and a csv of the points: the trained weights, the RTN pick, and
every grid point BSR drew, with its count, its expected share and its NLL.

Usage: ``python -m lpe.reports.fig1 --data DATA --out figures/mini/fig1_concept
--csv results/mini/fig1_concept.csv [--format int4 --range 2 --draws 1000 --points 2000 --seed 0]``
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from lpe.core.artifacts import write_with
from lpe.data.datasets import load_splits
from lpe.formats.names import int_bits
from lpe.formats.number_formats import int_format
from lpe.formats.rounding import bsr_reference, rtn_reference
from lpe.reports.plotting import plt, save_figure, sns

CLASSES = (0, 1)


def two_features(splits, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised half-means of the first ``points`` training signals of classes 0 and 1."""
    x, y = splits.x["train"].flatten(1), splits.y["train"]
    keep = (y == CLASSES[0]) | (y == CLASSES[1])
    x, y = x[keep][:points], y[keep][:points]
    half = x.shape[1] // 2
    features = torch.stack([x[:, :half].mean(1), x[:, half:].mean(1)], dim=1).double()
    features = (features - features.mean(0)) / features.std(0)
    return features, (y == CLASSES[1]).double()


def nll(w: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss of weights ``w`` (..., 2) on the data: shape ``w.shape[:-1]``."""
    logits = torch.einsum("...k,nk->...n", w.double(), features)
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels.expand_as(logits), reduction="none"
    ).mean(-1)


def train(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The minimiser of the logistic loss (convex), by full-batch L-BFGS from zero."""
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [w], max_iter=200, tolerance_grad=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = nll(w, features, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def bsr_counts(w, scale, qmax: int, draws: int, seed: int) -> dict[tuple[int, int], int]:
    generator = torch.Generator().manual_seed(seed)
    stacked = w.float().expand(draws, 2).contiguous()
    codes = bsr_reference(stacked, scale, qmax, generator)
    points, counts = torch.unique(codes, dim=0, return_counts=True)
    return {tuple(map(int, p)): int(c) for p, c in zip(points, counts, strict=True)}


def expected_share(w, scale, code: tuple[int, int]) -> float:
    """P(BSR draws ``code``): the product of the two independent Bernoulli outcomes."""
    u = (w.double() / scale).tolist()
    share = 1.0
    for value, q in zip(u, code, strict=True):
        frac = value - np.floor(value)
        share *= frac if q == np.floor(value) + 1 else 1 - frac
    return share


def compute(splits, bits: int, grid_range: float, draws: int, points: int, *, seed: int):
    if grid_range < 1:
        raise ValueError(f"figure1.range must be >= 1, got {grid_range}")
    qmax = int(int_format(bits).max_value)  # INT-b's largest code
    features, labels = two_features(splits, points)
    w = train(features, labels)
    scale = float(grid_range * w.abs().max() / qmax)
    rtn = rtn_reference(w.float(), torch.tensor(scale), qmax)
    counts = bsr_counts(w, torch.tensor(scale), qmax, draws, seed)
    rows = [
        {"point": "trained", "w1": w[0].item(), "w2": w[1].item()},
        {"point": "rtn", "w1": rtn[0].item() * scale, "w2": rtn[1].item() * scale},
    ]
    for code, count in sorted(counts.items()):
        rows.append(
            {
                "point": f"bsr {code[0]:+d},{code[1]:+d}",
                "w1": code[0] * scale,
                "w2": code[1] * scale,
                "count": count,
                "share": count / draws,
                "expected_share": expected_share(w, scale, code),
            }
        )
    table = pd.DataFrame(rows)
    table["nll"] = nll(torch.tensor(table[["w1", "w2"]].to_numpy()), features, labels).numpy()
    return table, scale, features, labels


def figure(table: pd.DataFrame, scale: float, features, labels, bits: int, *, draws: int):
    trained = table[table["point"] == "trained"].iloc[0]
    center = np.array([trained.w1, trained.w2])
    span = 2.5 * scale
    a = np.linspace(center[0] - span, center[0] + span, 121)
    b = np.linspace(center[1] - span, center[1] + span, 121)
    mesh = torch.tensor(np.stack(np.meshgrid(a, b), axis=-1))
    loss = nll(mesh, features, labels).numpy()
    sns.set_theme(style="white", context="paper")
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    levels = np.unique(np.quantile(loss, np.linspace(0, 1, 21)))  # contrast in the basin
    filled = ax.contourf(a, b, loss, levels=levels, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="training NLL (colour levels at quantiles)")
    ga = np.arange(np.ceil((a[0]) / scale), np.floor(a[-1] / scale) + 1) * scale
    gb = np.arange(np.ceil((b[0]) / scale), np.floor(b[-1] / scale) + 1) * scale
    gx, gy = np.meshgrid(ga, gb)
    ax.plot(gx.ravel(), gy.ravel(), "+", color="0.85", markersize=6, label=f"INT-{bits} grid")
    bsr = table[table["point"].str.startswith("bsr")]
    ax.scatter(
        bsr["w1"],
        bsr["w2"],
        s=2000 * bsr["share"],
        facecolors="none",
        edgecolors="w",
        linewidths=1.5,
        label=f"BSR draws ({draws}): share drawn (expected)",
    )
    for row in bsr.itertuples():
        ax.annotate(
            f"{row.share:.2f} ({row.expected_share:.2f})",
            (row.w1, row.w2),
            textcoords="offset points",
            xytext=(-18, 14),
            c="w",
            fontsize=7,
        )
    rtn = table[table["point"] == "rtn"].iloc[0]
    ax.plot(rtn.w1, rtn.w2, "X", color="C3", markersize=10, label="RTN pick")
    ax.plot(trained.w1, trained.w2, "*", color="orange", markersize=14, label="trained weights")
    ax.set_xlabel("weight 1 (first-half mean)")
    ax.set_ylabel("weight 2 (second-half mean)")
    ax.set_title(
        f"Figure 1: RTN picks one INT-{bits} grid point, LPE-BSR draws several", fontsize=9
    )
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--format", default="int4", help="the grid's INT-b format (int2..int8)")
    parser.add_argument(
        "--range",
        type=float,
        default=2.0,
        dest="grid_range",
        help="grid scale = range x max|w| / qmax (>= 1)",
    )
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--points", type=int, default=2000, help="training signals used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="path prefix; .png and .pdf are added")
    parser.add_argument("--csv", required=True)
    args = parser.parse_args(argv)
    if args.draws < 1 or args.points < 2:
        parser.error("--draws must be >= 1 and --points >= 2")
    try:
        bits = int_bits(args.format)
    except ValueError as err:
        parser.error(str(err))
    if bits > 8:
        parser.error(f"--format {args.format}: the figure draws INT-b grids up to int8")
    splits = load_splits(args.data)
    table, scale, features, labels = compute(
        splits, bits, args.grid_range, args.draws, args.points, seed=args.seed
    )
    save_figure(figure(table, scale, features, labels, bits, draws=args.draws), args.out)
    write_with(args.csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
