"""LPE-BSR scored on a user's own model: FP32, RTN and LPE-BSR rows, their checks and warnings.

:func:`apply_lpe` is the library call behind ``python -m lpe.tools.apply`` (which keeps the
command line: the model's source, the image folder, the flags and the printing): any
``torch.nn.Module`` and any loader of ``(inputs, labels)`` batches. One
:class:`lpe.evaluation.ensemble.LowPrecisionEnsemble` per seed (member k drawn with
``member_seed(seed, k)``), each member decoded on the device once and run through the one model
instance on every batch, so memory holds one model, one member and the members' shared base,
and the ensemble is accumulated as it goes (``lpe.evaluation.spine.Accumulator``). The checks and
the far-from-RTN warning are :mod:`lpe.evaluation.verdicts`'; :func:`summary_lines` words them
as the command prints them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd
import torch
from tqdm import tqdm

from lpe.core import metrics
from lpe.evaluation import verdicts
from lpe.evaluation.ensemble import LowPrecisionEnsemble, number_format
from lpe.evaluation.spine import Accumulator
from lpe.evaluation.temperature import bound_warning, fit_temperature, scaled
from lpe.formats.policy import QuantPolicy, model_tensors, policy_for
from lpe.members.files import quantize


@torch.inference_mode()
def _runs(model: torch.nn.Module, ensembles: list[LowPrecisionEnsemble]) -> list[tuple]:
    """The runs scored: ``(method, seed, members, paper bits, stored bits)`` of FP32, RTN (the
    first ensemble's stored RTN member, or rounded from the model) and each LPE-BSR ensemble;
    ``members`` gives the run's members (None: the model itself)."""
    first = ensembles[0]
    rtn = first.rtn()
    if rtn is None:
        state = {name: t.detach() for name, t in model_tensors(model).items()}
        rtn = quantize(state, first.fmt, "rtn", policy=first.policy)
    fp32_bits = 32 * _numel(model_tensors(model))
    runs = [
        ("fp32", None, lambda: [None], fp32_bits, fp32_bits),
        ("rtn", None, lambda: [rtn], rtn.bits, rtn.bits),
    ]
    return runs + [("lpe-bsr", e.seed, e.members, e.paper_bits(), e.bits) for e in ensembles]


def _row(name, seed, precision, done, *, paper_bits, stored_bits) -> dict:
    """A run's row of scores: its ensemble's (``done``) NLL, ERR, ECE, diversity and costs."""
    labels, lp = done.labels, done.log_probs[None]
    nll = metrics.nll(lp, labels)
    return {
        "method": name,
        "seed": seed,
        "precision": precision,
        "members": done.count,
        "memory_mbit": paper_bits / 1e6,
        "stored_mbit": stored_bits / 1e6,
        "nll": nll,
        "err": metrics.err(lp, labels),
        "ece": metrics.ece(lp, labels),
        "avg_loss": done.avg_loss,
        "ambiguity": done.avg_loss - nll,
        "temperature": math.nan,
        "forward_passes": done.count,
        "infer_us": 1e6 * done.seconds / len(labels),
    }


def apply_lpe(
    model: torch.nn.Module,
    loader,
    fmt: int | str = "int5",
    members: int = 10,
    seed: int = 0,
    *,
    device: torch.device | None = None,
    policy: QuantPolicy | None = None,
    calibration=None,
    ensembles: list[LowPrecisionEnsemble] | None = None,
    seeds: list[int] | None = None,
    keep_predictions: bool = False,
) -> pd.DataFrame:
    """FP32, RTN and LPE-BSR (``members`` members in the number format ``fmt``: a name of
    ``lpe.formats.names.CATALOGUE`` such as ``"int5"``, or INT-b's bits, as
    :class:`LowPrecisionEnsemble` takes it) scores of ``model``; with a ``calibration`` loader
    (other images than ``loader``'s), each also at its temperature fit there ("+ts" rows).

    One LPE-BSR ensemble (:class:`lpe.evaluation.ensemble.LowPrecisionEnsemble`) per seed of
    ``seeds`` (default ``[seed]``), or the given ``ensembles`` (for example loaded from a
    file); RTN is their stored RTN member or rounded from the model. ``table.attrs`` holds the
    checks with their bands (``"checks"``, :mod:`lpe.evaluation.verdicts`), the warnings
    (``"warnings"``) and, with ``keep_predictions``, every row's ``(N, C)`` log-probabilities
    and the labels (``"predictions"``, ``"labels"``).

    ``loader`` yields ``(images, labels)`` batches and is read once per member, so it should be
    cheap to reread: ``lpe.data.images.image_loader`` decodes a folder once into its cache. Each
    member is decoded on ``device`` once and evaluated on every batch; ensembles are accumulated
    as a running log-sum-exp, so memory holds one model, one member, the members' shared base and
    ``(N, C)`` log-probabilities per row.
    """
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    device = device or torch.device("cpu")
    model = model.to(device)  # its modes are its own: members run in eval mode (stream)
    if ensembles is None:
        policy = policy or policy_for(model)
        ensembles = [
            LowPrecisionEnsemble(
                model, number_format(fmt), members, s, policy, progress=f"draw seed {s}"
            )
            for s in (seeds or [seed])
        ]
    first = ensembles[0]
    rows, per_image, predictions, bsr_seeds, bsr_ts = [], {}, {}, [], []
    for name, run_seed, run_members, paper_bits, stored_bits in _runs(model, ensembles):
        label = name if run_seed is None else f"{name} seed {run_seed}"
        done = _ensemble_of(first.stream(loader, run_members(), device), label)
        labels, lp = done.labels, done.log_probs[None]
        precision = "fp32" if name == "fp32" else first.fmt.name
        rows.append(
            _row(name, run_seed, precision, done, paper_bits=paper_bits, stored_bits=stored_bits)
        )
        key = name if run_seed is None else f"{name}-{run_seed}"
        if name == "lpe-bsr":
            bsr_seeds.append(verdicts.per_image_nll(done.log_probs, labels))
        else:
            per_image[name] = verdicts.per_image_nll(done.log_probs, labels)
        if keep_predictions:
            predictions[key] = done.log_probs
        if calibration is None:
            continue
        # the same members again, on the held-out images only
        fit_on = _ensemble_of(first.stream(calibration, run_members(), device), f"{label} fit")
        temperature = fit_temperature(fit_on.log_probs[None], fit_on.labels)
        at_t = scaled(lp, temperature)
        rows.append(
            {
                **rows[-1],
                "method": f"{name}+ts",
                "nll": metrics.nll(at_t, labels),
                "ece": metrics.ece(at_t, labels),
                "avg_loss": math.nan,
                "ambiguity": math.nan,
                "temperature": temperature,
            }
        )
        ts = verdicts.per_image_nll(at_t[0], labels)
        if name == "lpe-bsr":
            bsr_ts.append(ts)
        else:
            per_image[f"{name}+ts"] = ts
        if keep_predictions:
            predictions[f"{key}+ts"] = at_t[0]
    table = pd.DataFrame(rows).astype({"seed": "Int64"})
    table.attrs["checks"] = verdicts.lpe_checks(per_image, bsr_seeds, bsr_ts)
    bsr_loss = float(table.loc[table["method"] == "lpe-bsr", "avg_loss"].mean())
    warnings = [verdicts.far_from_rtn(bsr_loss, float(per_image["rtn"].mean()))]
    for row in rows:  # a temperature stuck at the search's bound is no minimum
        if row["method"].endswith("+ts"):
            label = row["method"] + ("" if pd.isna(row["seed"]) else f" seed {row['seed']}")
            warnings.append(bound_warning(label, row["temperature"]))
    table.attrs["warnings"] = [w for w in warnings if w]
    if keep_predictions:
        table.attrs["predictions"], table.attrs["labels"] = predictions, labels
    return table


class _Evaluated(NamedTuple):
    log_probs: torch.Tensor  # (N, C): the log of the mean member probability
    labels: torch.Tensor
    avg_loss: float  # the members' mean NLL
    seconds: float
    count: int


def _ensemble_of(streamed, label: str) -> _Evaluated:
    """Accumulate ``LowPrecisionEnsemble.stream``'s members into their ensemble (the evaluation
    spine's accumulator, ``lpe.evaluation.spine.Accumulator``)."""
    ensemble = None
    for _, lp, labels, took in tqdm(streamed, desc=f"apply {label}", mininterval=5):
        ensemble = ensemble or Accumulator(labels)
        ensemble.add(lp, took)
    return _Evaluated(
        ensemble.value(), ensemble.labels, ensemble.avg_loss(), ensemble.seconds, ensemble.count
    )


def summary_lines(table: pd.DataFrame) -> list[str]:
    """What follows the table: LPE-BSR's mean ± sd over seeds (with several), the checks with
    their bands, the warnings."""
    lines = []
    bsr = table[table["method"] == "lpe-bsr"]
    if len(bsr) > 1:
        spread = ", ".join(
            f"{m.upper()} {bsr[m].mean():.4f} ± {bsr[m].std(ddof=1):.4f}"
            for m in ("nll", "err", "ece")
        )
        seeds = ", ".join(str(s) for s in bsr["seed"])
        lines.append(f"LPE-BSR over {len(bsr)} seeds ({seeds}): {spread} (mean ± sd)")
    checks = table.attrs.get("checks", [])
    if checks:
        lines.append("checks (margin > 0 on LPE-BSR's side; decided outside its band):")
        lines += [
            f"  {c.outcome:>12}: {c.text}; margin {c.parts[0][0]:+.4f} vs band ±{c.parts[0][1]:.4f}"
            for c in checks
        ]
    return lines + list(table.attrs.get("warnings", []))


def describe_policy(policy: QuantPolicy, model: torch.nn.Module) -> str:
    """What the members quantize and what stays FP32, for the log: counts, share, the patterns."""
    summary = policy.split(model_tensors(model))
    shown = ", ".join(policy.exclude[:8]) + (", ..." if len(policy.exclude) > 8 else "")
    return f"policy: {summary.describe()}; FP32 by role or --keep: {shown}"


def _numel(state: dict[str, torch.Tensor]) -> int:
    return sum(math.prod(t.shape) for t in state.values())
