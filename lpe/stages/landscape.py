"""The ``landscape`` stage: the plane through three weight vectors (Figures 3, 4 and 6).

The anchors are a solution ``w0``, a posterior (BMA) draw ``w1`` and an LPE-BSR member ``w2``
made from the solution (Figures 3 and 6); or, with ``--second`` instead of ``--posterior``, two
snapshots ``w0``, ``w1`` of a snapshot ensemble and an LPE-BSR member ``w2`` of the first
(Figure 4). With ``e1`` along ``w1 - w0`` and ``e2`` the part of ``w2 - w0``
orthogonal to it (Gram-Schmidt), a point ``(a, b)`` of the plane is ``w0 + a e1 + b e2``; the
anchors sit at ``(0, 0)``, ``(|w1 - w0|, 0)`` and ``(<w2 - w0, e1>, <w2 - w0, e2>)``. The grid
spans the anchors plus a margin (a fraction of the anchors' extent) on every side.

At every grid point the one model instance runs with the point's weights (the evaluation spine,
``lpe.evaluation.spine.open_vector``; no copy of the model per point) and is evaluated on the
first ``points`` inputs of the split: test NLL, and the KL divergence ``KL(p_anchor || p_point)``
of the point's predictive distribution from each anchor's, averaged over inputs.

Output ``.npz``: ``a (G,)``, ``b (G,)``, ``nll (G, G)`` indexed ``[b, a]``, ``kl (3, G, G)``,
``anchors (3, 2)``, ``anchor_names (3,)``, ``anchor_nll (3,)`` (evaluated at the anchors' own
weights), plus ``model``, ``optimizer``, ``bits``, ``points``.

Usage: ``python -m lpe.stages.landscape --checkpoint SOL --posterior POST --member
MEMBER.safetensors --data DATA --out PLANE.npz [--grid 11 --margin 0.25 --points 2000 --seed 0]``;
Figure 4: ``--checkpoint SNAPSHOT1 --second SNAPSHOT2 --member MEMBER_OF_SNAPSHOT1``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from lpe.cli.jobs import from_cli
from lpe.core.artifacts import write_with
from lpe.core.jobs import setting
from lpe.core.runtime import Inference, autocast
from lpe.data.datasets import SPLITS
from lpe.data.inputs import StageData
from lpe.evaluation import spine
from lpe.members.sets import folder_member
from lpe.methods import load_all
from lpe.models.checkpoints import load_checkpoint
from lpe.training.finetuning import draw, load_solution

ANCHOR_NAMES = ("solution", "BMA draw", "LPE-BSR draw")
SNAPSHOT_ANCHOR_NAMES = ("snapshot 1", "snapshot 2", "LPE-BSR draw")


@dataclass
class Plane:
    origin: torch.Tensor  # (P,)
    e1: torch.Tensor  # (P,) unit
    e2: torch.Tensor  # (P,) unit, orthogonal to e1

    @classmethod
    def through(cls, w0: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> Plane:
        u, v = (w1 - w0).double(), (w2 - w0).double()
        if u.norm() == 0:
            raise ValueError("the first two anchors coincide: no plane through them")
        e1 = u / u.norm()
        v_perp = v - (v @ e1) * e1
        if v_perp.norm() <= 1e-5 * v.norm():  # float32 weights: collinear up to rounding
            raise ValueError("the three anchors are collinear: no plane through them")
        return cls(w0.double(), e1, v_perp / v_perp.norm())

    def coordinates(self, w: torch.Tensor) -> tuple[float, float]:
        d = w.double() - self.origin
        return float(d @ self.e1), float(d @ self.e2)

    def point(self, a: float, b: float) -> torch.Tensor:
        return (self.origin + a * self.e1 + b * self.e2).float()


def grid_axes(anchors: np.ndarray, grid: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``grid`` points per axis spanning the anchors plus ``margin`` x their extent each side."""
    if grid < 3:
        raise ValueError(f"landscape.grid must be >= 3 points per axis, got {grid}")
    if margin < 0:
        raise ValueError(f"landscape.margin must be >= 0, got {margin}")
    axes = []
    for column in anchors.T:
        low, high = column.min(), column.max()
        pad = margin * (high - low)
        axes.append(np.linspace(low - pad, high + pad, grid))
    return axes[0], axes[1]


def kl_from(anchor_log_probs: torch.Tensor, log_probs: torch.Tensor) -> float:
    """Mean over inputs of ``KL(p_anchor || p)``; both ``(N, C)`` log-probabilities."""
    p = anchor_log_probs.exp()
    return float((p * (anchor_log_probs - log_probs)).sum(-1).mean())


def nll_of(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(-log_probs.gather(1, labels[:, None]).mean())


def evaluate_plane(model, plane: Plane, anchors, a_axis, b_axis, *, x, labels, device, batch=1000):
    """NLL and KL-from-each-anchor at every grid point; also each anchor's own NLL. The anchors,
    then the grid's points row by row, each made when it is evaluated, are the members of one
    stream of the evaluation spine (``lpe.evaluation.spine.open_vector``)."""
    points = itertools.chain(anchors, (plane.point(a, b) for b in b_axis for a in a_axis))
    inputs = spine.Batches(x, batch)
    passes = spine.stream(model, points, spine.open_vector(model, device), inputs, device)
    anchor_lp = [next(passes).log_probs for _ in anchors]
    anchor_nll = np.array([nll_of(lp, labels) for lp in anchor_lp])
    nll = np.zeros((len(b_axis), len(a_axis)))
    kl = np.zeros((len(anchors), len(b_axis), len(a_axis)))
    with tqdm(total=nll.size, desc="landscape", mininterval=5) as bar:
        for i, j in itertools.product(range(len(b_axis)), range(len(a_axis))):
            lp = next(passes).log_probs
            nll[i, j] = nll_of(lp, labels)
            kl[:, i, j] = [kl_from(alp, lp) for alp in anchor_lp]
            bar.update(1)
    if not (np.isfinite(nll).all() and np.isfinite(kl).all()):
        raise FloatingPointError("the landscape has non-finite values; lower landscape.margin")
    return nll, kl, anchor_nll


@dataclass(frozen=True, kw_only=True)
class LandscapeJob(StageData, Inference):
    """One plane through three weight vectors (see the module's docstring)."""

    checkpoint: str = setting(help="the solution (first anchor)")
    posterior: str | None = setting(None, "posterior file of the BMA draw (second anchor)")
    second: str | None = setting(None, "a second checkpoint as the second anchor (Figure 4)")
    member: str = setting(
        help="an LPE-BSR member of the solution: a member file, or a members "
        "folder (its first member)"
    )
    split: str = setting("test", "the split evaluated", config="predict.split", choices=SPLITS)
    grid: int = setting(11, "points per axis (>= 3)", config="landscape.grid")
    margin: float = setting(0.25, "fraction of the extent", config="landscape.margin")
    points: int = setting(2000, "inputs evaluated per point", config="landscape.points")
    seed: int = setting(0, "seed of the BMA draw")
    out: str = setting(help="the plane written (.npz)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.posterior is None) == (self.second is None):
            raise ValueError("give one second anchor: --posterior (a BMA draw) or --second")
        if self.grid < 3:
            raise ValueError(f"grid must be >= 3 points per axis, got {self.grid}")
        if self.points < 1:
            raise ValueError(f"points must be >= 1, got {self.points}")


def anchor_weights(job: LandscapeJob, device: torch.device):
    """The plane's three anchors as flat weight vectors (the solution, the BMA draw or second
    snapshot, the LPE-BSR draw), the model the plane is evaluated with, its checkpoint's info and
    the member."""
    if job.posterior:
        state, info, posterior = load_solution(job.checkpoint, job.posterior)
    else:
        state, info = load_checkpoint(job.checkpoint)
    member = folder_member(job.member, job.checkpoint, info.sha256)
    model = info.build().to(device)
    member.load_into(model)
    lpe_draw = torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().clone()
    model.load_state_dict(state)
    solution = torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().clone()
    if job.posterior:
        second_w = draw(posterior, job.seed, 0)
    else:
        second_state, _ = load_checkpoint(job.second)
        model.load_state_dict(second_state)
        second_w = torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().clone()
    return [solution, second_w, lpe_draw], model, info, member


def run(job: LandscapeJob) -> None:
    """Evaluate the job's plane and write it."""
    load_all()  # the posterior file's type registers with its method (lpe.methods)
    device = job.start()
    anchors_w, model, info, member = anchor_weights(job, device)
    plane = Plane.through(*anchors_w)
    anchors = np.array([plane.coordinates(w) for w in anchors_w])
    a_axis, b_axis = grid_axes(anchors, job.grid, job.margin)
    x, labels = job.open(info).tensors(job.split, job.points)
    with autocast(device, job.dtype):
        nll, kl, anchor_nll = evaluate_plane(
            model, plane, anchors_w, a_axis, b_axis, x=x, labels=labels, device=device
        )
    arrays = {
        "a": a_axis,
        "b": b_axis,
        "nll": nll,
        "kl": kl,
        "anchors": anchors,
        "anchor_names": np.asarray(ANCHOR_NAMES if job.posterior else SNAPSHOT_ANCHOR_NAMES),
        "anchor_nll": anchor_nll,
        "model": np.asarray(info.model),
        "optimizer": np.asarray(info.optimizer),
        "bits": np.asarray(member.fmt.code_bits),
        "points": np.asarray(len(x)),
    }
    write_with(job.out, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    print(f"wrote {job.out}: {job.grid} x {job.grid} grid, anchors at {anchors.round(4)}")


def main(argv: list[str] | None = None) -> None:
    run(from_cli(LandscapeJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
