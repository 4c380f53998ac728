"""Which number format and how many members pay on a user's model, within a memory budget.

:func:`choose` evaluates, for every number format asked for (default: every registered one),
rounding to nearest (M = 1) and LPE-BSR ensembles of M = 2, 5, 10, 20 members, plus the FP32
model, on two parts of the user's data: a held-out part the choice is made on, and an evaluated
part it is reported on (the user's own Figure 8: NLL against memory). Each format's members are
drawn once (:class:`lpe.evaluation.ensemble.LowPrecisionEnsemble`, M = 20) and each member runs
once over every example of both parts; the smaller ensembles are prefixes of the larger one, so
the whole search costs ``formats * (1 + max(sizes)) + 1`` passes over the data.

The choice: among the candidates whose memory is within the budget (``accounting``: ``stored``,
what the saved file costs, the shared-base accounting; or ``paper``, M full members), the lowest
held-out NLL; FP32 is a candidate too (when it fits and wins, the answer is not to quantize).
The checks compare the choice with RTN of its format, with FP32 and with the runner-up on the
evaluated part, paired example by example, with the examples' band (one draw of the members:
their noise is not in the band).

Inputs: loaders of ``(inputs, labels)`` batches as :meth:`LowPrecisionEnsemble.stream` reads
them; a language model's ``(N, T, V)`` outputs with ``(N, T)`` next-token labels are scored per
token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm import tqdm

from lpe.core import metrics
from lpe.core.checks import Check
from lpe.evaluation.ensemble import LowPrecisionEnsemble, number_format
from lpe.evaluation.spine import Accumulator
from lpe.evaluation.verdicts import paired_margin, per_image_nll
from lpe.formats.names import CATALOGUE
from lpe.formats.policy import QuantPolicy, model_tensors, policy_for

SIZES = (2, 5, 10, 20)
ACCOUNTINGS = {"stored": "stored_mbit", "paper": "memory_mbit"}


@dataclass
class Choice:
    """What :func:`choose` found: a row per candidate (``table``: format, method, members, both
    memories, held-out NLL, the evaluated part's NLL, ERR and ECE, whether it fits the budget,
    which one is chosen), the chosen row, and the checks on the evaluated part."""

    table: pd.DataFrame
    chosen: dict
    checks: list[Check] = field(default_factory=list)
    budget_mbit: float | None = None
    accounting: str = "stored"

    def lines(self) -> list[str]:
        """The choice and its checks, as the command prints them."""
        c = self.chosen
        what = "FP32" if c["method"] == "fp32" else f"{c['format']}, M = {c['members']}"
        if c["method"] == "rtn":
            what += " (RTN)"
        budget = (
            f"within {self.budget_mbit:g} Mbit ({self.accounting})"
            if self.budget_mbit is not None
            else "no memory budget"
        )
        lines = [
            f"chosen on the held-out part, {budget}: {what}: {c['stored_mbit']:.3f} Mbit stored, "
            f"{c['memory_mbit']:.3f} Mbit as M members; evaluated NLL {c['nll']:.4f}, "
            f"ERR {c['err']:.4f}, ECE {c['ece']:.4f}"
        ]
        if self.checks:
            lines.append("checks on the evaluated part (margin > 0 on the choice's side):")
            lines += [
                f"  {k.outcome:>12}, leaning {k.leaning}: {k.text}; margin "
                f"{k.parts[0][0]:+.4f} vs band ±{k.parts[0][1]:.4f}"
                for k in self.checks
            ]
        return lines


class _Chained:
    """Two loaders read as one, again on every pass; ``boundary`` is the number of labels the
    first gave (known after a pass)."""

    def __init__(self, first: Iterable, second: Iterable) -> None:
        self.first, self.second, self.boundary = first, second, None

    def __iter__(self):
        count = 0
        for x, y in self.first:
            count += y.numel()
            yield x, y
        self.boundary = count
        yield from self.second


def check_choice_arguments(
    formats: Sequence[str] | None,
    sizes: Sequence[int],
    budget_mbit: float | None,
    accounting: str,
) -> list[str]:
    """The formats to try, after every check that needs no model or data (one-line errors)."""
    names = list(CATALOGUE) if formats is None else list(formats)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown or not names:
        raise ValueError(f"unknown formats {unknown or names}; allowed: {', '.join(CATALOGUE)}")
    if len(set(names)) != len(names):
        raise ValueError(f"formats must be distinct, got {names}")
    if not sizes or min(sizes) < 2 or list(sizes) != sorted(set(sizes)):
        raise ValueError(
            f"sizes must be distinct, increasing and >= 2 (M = 1 is RTN, always evaluated), "
            f"got {list(sizes)}"
        )
    if budget_mbit is not None and not budget_mbit > 0:
        raise ValueError(f"the memory budget must be > 0 Mbit, got {budget_mbit}")
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"accounting must be one of {', '.join(ACCOUNTINGS)}, got {accounting!r}")
    return names


@torch.inference_mode()
def choose(
    model: torch.nn.Module,
    held_out: Iterable,
    evaluated: Iterable,
    formats: Sequence[str] | None = None,
    sizes: Sequence[int] = SIZES,
    budget_mbit: float | None = None,
    accounting: str = "stored",
    seed: int = 0,
    *,
    device: torch.device | None = None,
    policy: QuantPolicy | None = None,
    progress: bool = True,
) -> Choice:
    """Evaluate FP32, and RTN and LPE-BSR with ``sizes`` members in each of ``formats`` (default
    every registered format), choose on ``held_out``, report on ``evaluated`` (see the module
    docstring). ``budget_mbit``: the most memory a candidate may take, in ``accounting``
    (``"stored"`` or ``"paper"``); None: no limit."""
    names = check_choice_arguments(formats, sizes, budget_mbit, accounting)
    device = device or torch.device("cpu")
    model = model.to(device)
    policy = policy or policy_for(model)
    data = _Chained(held_out, evaluated)
    passes = tqdm(
        total=1 + len(names) * (1 + max(sizes)),
        desc="choose: member passes",
        mininterval=5,
        disable=not progress,
    )
    fp32_bits = 32 * sum(t.numel() for t in model_tensors(model).values())
    if budget_mbit is not None:  # before any pass: the smallest candidate is an RTN member
        _check_budget(model, names, seed, policy, budget_mbit, accounting, fp32_bits)
    rows, per_example = [], {}
    for i, name in enumerate(names):
        ensemble = LowPrecisionEnsemble(
            model, number_format(name), max(sizes), seed, policy, with_rtn=True
        )
        rtn, shared = ensemble.rtn(), ensemble.shared
        plane = sum(8 * p.shape[1] for p in shared.planes.values())
        fixed = shared.bits - len(shared) * plane  # the base, the scales, the kept tensors
        # the FP32 model (None: its own weights) with the first format's members, then RTN
        runs = [None] * (i == 0) + [rtn, *ensemble.members()]
        ensemble_so_far = Accumulator()
        for member, lp, labels, _ in ensemble.stream(data, runs, device):
            passes.update()
            if member is None:
                rows.append(
                    _scored("fp32", "fp32", 1, fp32_bits, fp32_bits, lp, labels, data.boundary)
                )
                per_example["fp32"] = _per_example(lp, labels, data.boundary)
            elif member is rtn:  # one member, stored as itself
                rows.append(_scored(name, "rtn", 1, rtn.bits, fixed, lp, labels, data.boundary))
                per_example[(name, "rtn")] = _per_example(lp, labels, data.boundary)
            else:
                ensemble_so_far.add(lp)
                k = ensemble_so_far.count
                if k in sizes:
                    mean = ensemble_so_far.value()
                    rows.append(
                        _scored(
                            name,
                            "lpe-bsr",
                            k,
                            k * rtn.bits,
                            fixed + k * plane,
                            mean,
                            labels,
                            data.boundary,
                        )
                    )
                    per_example[(name, k)] = _per_example(mean, labels, data.boundary)
    passes.close()
    table = pd.DataFrame(rows)
    memory = table[ACCOUNTINGS[accounting]]
    table["in_budget"] = True if budget_mbit is None else memory <= budget_mbit
    ranked = table[table["in_budget"]].sort_values("held_out_nll", kind="stable")
    table["chosen"] = table.index == ranked.index[0]
    chosen = table.loc[ranked.index[0]].to_dict()
    runner_up = table.loc[ranked.index[1]].to_dict() if len(ranked) > 1 else None
    checks = _checks(chosen, runner_up, per_example)
    return Choice(table, chosen, checks, budget_mbit, accounting)


def _check_budget(model, names, seed, policy, budget_mbit, accounting, fp32_bits) -> None:
    """Refuse a budget that no candidate fits, from one drawn member per format (an RTN member
    costs what one member stored alone does, under either accounting): seconds, not passes."""
    one = [LowPrecisionEnsemble(model, number_format(n), 1, seed, policy).bits for n in names]
    smallest = min(one + [fp32_bits]) / 1e6
    if smallest > budget_mbit:
        raise ValueError(
            f"no candidate fits {budget_mbit:g} Mbit ({accounting}): the smallest takes "
            f"{smallest:.3f} Mbit; raise the budget or add a narrower format"
        )


def _split(values: torch.Tensor, labels: torch.Tensor, boundary: int):
    """Per-example rows and labels (a language model's tokens flattened), cut at ``boundary``."""
    values, labels = values.reshape(-1, values.shape[-1]), labels.reshape(-1)
    return (values[:boundary], labels[:boundary]), (values[boundary:], labels[boundary:])


def _per_example(log_probs, labels, boundary) -> torch.Tensor:
    """The evaluated part's per-example NLL (what the checks pair)."""
    _, (lp, y) = _split(log_probs, labels, boundary)
    return per_image_nll(lp, y)


def _scored(fmt, method, members, paper_bits, stored_bits, log_probs, labels, boundary) -> dict:
    (held_lp, held_y), (lp, y) = _split(log_probs, labels, boundary)
    if not len(held_y) or not len(y):
        raise ValueError("the held-out and the evaluated data must both be non-empty")
    return {
        "format": fmt,
        "method": method,
        "members": members,
        "memory_mbit": paper_bits / 1e6,
        "stored_mbit": stored_bits / 1e6,
        "held_out_nll": metrics.nll(held_lp[None], held_y),
        "nll": metrics.nll(lp[None], y),
        "err": metrics.err(lp[None], y),
        "ece": metrics.ece(lp[None], y),
    }


def _key(row: dict):
    if row["method"] == "fp32":
        return "fp32"
    return (row["format"], "rtn") if row["method"] == "rtn" else (row["format"], row["members"])


def _label(row: dict) -> str:
    if row["method"] == "fp32":
        return "FP32"
    if row["method"] == "rtn":
        return f"RTN {row['format']}"
    return f"LPE-BSR {row['format']} M={row['members']}"


def _checks(chosen: dict, runner_up: dict | None, per_example: dict) -> list[Check]:
    """The choice against RTN of its format, FP32 and the runner-up, on the evaluated part."""
    mine = per_example[_key(chosen)]
    others = []
    if chosen["method"] == "lpe-bsr":
        others.append({"method": "rtn", "format": chosen["format"], "members": 1})
    if chosen["method"] != "fp32":
        others.append({"method": "fp32", "format": "fp32", "members": 1})
    if runner_up is not None and _key(runner_up) not in {_key(o) for o in others}:
        others.append(runner_up)
    checks = []
    for other in others:
        theirs = per_example[_key(other)]
        margin, band = paired_margin(mine, theirs)
        text = (
            f"{_label(chosen)} beats {_label(other)}"
            f"{' (the runner-up on the held-out part)' if other is runner_up else ''}: "
            f"NLL {float(mine.mean()):.4f} vs {float(theirs.mean()):.4f} "
            "(examples' band; one draw of the members)"
        )
        checks.append(Check.of(text, margin, band))
    return checks


def plot_choice(choice: Choice, path, title: str = "") -> None:
    """NLL on the evaluated part against memory (log scale, the choice's accounting): a line per
    format through M = 2 ... 20, RTN as open markers, FP32 and the budget as reference lines,
    the Pareto front (the lowest NLL at that memory or less) as a step line, the choice ringed."""
    # a Figure of its own, not pyplot: the caller's backend and open figures are left alone
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from lpe.core.artifacts import write_with

    table, column = choice.table, ACCOUNTINGS[choice.accounting]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    quantized = table[table["method"] != "fp32"]
    colors = colormaps["tab20"]
    for i, (name, rows) in enumerate(quantized.groupby("format", sort=False)):
        color = colors(i % 20)
        bsr, rtn = rows[rows["method"] == "lpe-bsr"], rows[rows["method"] == "rtn"]
        ax.plot(bsr[column], bsr["nll"], "o-", color=color, ms=4, lw=1, label=name)
        ax.plot(rtn[column], rtn["nll"], "o", mfc="none", color=color, ms=6)
    fp32 = table[table["method"] == "fp32"].iloc[0]
    ax.axhline(fp32["nll"], color="black", ls="--", lw=1, label=f"FP32 ({fp32[column]:.2f} Mbit)")
    front = table.sort_values([column, "nll"])
    front = front[front["nll"] <= front["nll"].cummin()]
    ax.step(
        front[column],
        front["nll"],
        where="post",
        color="grey",
        lw=2,
        alpha=0.5,
        label="Pareto front",
    )
    if choice.budget_mbit is not None:
        ax.axvline(choice.budget_mbit, color="red", ls=":", lw=1, label="budget")
    c = choice.chosen
    ax.plot([c[column]], [c["nll"]], "o", ms=14, mfc="none", mec="red", mew=1.5, label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel(f"memory (Mbit, {choice.accounting})")
    # the region that matters: up to 1.5x FP32's NLL (a collapsed format would squash it)
    top = min(float(table["nll"].max()), 1.5 * float(fp32["nll"]))
    low = float(table["nll"].min())
    ax.set_ylim(low - 0.05 * (top - low), top + 0.05 * (top - low))
    clipped = int((table["nll"] > top).sum())
    ax.set_ylabel("NLL (evaluated part" + (f"; {clipped} above, not shown)" if clipped else ")"))
    ax.set_title(title or "format and members: RTN (open), LPE-BSR M = 2 ... 20")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), suffix=".png")
