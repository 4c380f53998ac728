"""The ``score`` stage: predictions files -> one tidy ``scores.csv``.

One row per run (model x optimizer x precision x method x seed) x ensemble size; ``optimizer``
says how the weights were obtained (``adamw`` training, or ``sgd``/``swag``/``ivon``
fine-tuning). An ensemble of size ``m`` is the first ``m`` members of a run, so sizes 1..M of one
run share members (as in the paper's "NLL vs ensemble size" curves). Columns (fixed names, see
``lpe.core.metrics``):

``model, optimizer, params, precision, method, seed, members, nll, err, ece, brier, avg_loss,
ambiguity, ens_loss, memory_bits, memory_bits_shared, backward_passes, forward_passes, infer_us,
temperature, nll_ts, ece_ts``

``memory_bits`` is the summed storage of the ``m`` members (a full member each: the paper's
accounting); ``memory_bits_shared`` the same ensemble's storage under the shared-base accounting
(``lpe.members.shared_base``: LPE-BSR members of one checkpoint and format share one base, the
scales and the FP32 tensors, and add one bit per quantized weight each; one member alone is stored
as itself; where a file records no ``member_shared_bits``, nothing is shared and it equals
``memory_bits``).

``backward_passes`` is the training budget (LPE-BSR adds none): a file's scalar, or, when it
holds a per-member ``budget`` (the fast ensembles of ``lpe.stages.fast_predict``, whose members come
from successive runs or cycles), the budget spent once its first ``m`` members exist;
``forward_passes`` counts model evaluations per input (= members); ``infer_us`` is the measured
inference wall time per test example in microseconds, the summed forward time of the ``m``
members on the stage's pinned threads (a measurement of the machine, not a number a
regeneration reproduces: ``lpe.tools.compare`` checks only that it is there).

The temperature-scaling control (:mod:`lpe.evaluation.temperature`): where a predictions file holds
the calibration split (the stages' ``--calibrate``), each ensemble of ``m`` members gets one
``temperature`` fit on that split, and its test ``nll_ts`` and ``ece_ts`` at that temperature
(ERR does not change: a temperature keeps the argmax). Empty where there is no calibration split.

Usage: ``python -m lpe.stages.score --preds work/mini/preds/*.npz --out results/mini/scores.csv``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpe.cli.jobs import from_cli
from lpe.core import metrics
from lpe.core.artifacts import ArtifactError, write_with
from lpe.core.jobs import Job, setting
from lpe.evaluation.temperature import fit_temperature, scaled
from lpe.formats.names import FP32, int_name
from lpe.methods import ROUNDING_RUNS, run_names

# the methods a predictions file may hold: the registry's names, as the score CSVs hold them
RUN_NAMES = frozenset(run_names())
COLUMNS = [
    "model",
    "optimizer",
    "params",
    "precision",
    "method",
    "seed",
    "members",
    "nll",
    "err",
    "ece",
    "brier",
    "avg_loss",
    "ambiguity",
    "ens_loss",
    "memory_bits",
    "memory_bits_shared",
    "backward_passes",
    "forward_passes",
    "infer_us",
    "temperature",
    "nll_ts",
    "ece_ts",
]


def load_predictions(path: str | Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            run = {k: f[k] for k in f.files}
    except Exception as err:
        raise ArtifactError(
            f"predictions file {path} is truncated or corrupted ({err}); delete it and rerun."
        ) from err
    problems = prediction_problems(run)
    if problems:
        raise ArtifactError(f"predictions file {path}: " + "; ".join(problems))
    return run


REQUIRED = (
    "log_probs",
    "labels",
    "member_bits",
    "bits",
    "method",
    "seed",
    "model",
    "params",
    "backward_passes",
)
NORMALIZED = 1e-3  # |logsumexp| of a member's log-probs over classes (float32 log-softmax: ~1e-6)


def prediction_problems(run: dict) -> list[str]:
    """What is wrong with a predictions file's arrays (see lpe.stages.predict for the layout)."""
    missing = [k for k in REQUIRED if k not in run]
    if missing:
        return [f"missing {', '.join(missing)} (written by another version? rerun its rule)"]
    lp, labels, member_bits = run["log_probs"], run["labels"], run["member_bits"]
    if lp.ndim != 3 or not np.issubdtype(lp.dtype, np.floating) or 0 in lp.shape:
        return [f"log_probs is {lp.dtype} of shape {lp.shape}; expected float (members, N, C)"]
    members, n, classes = lp.shape
    problems = []
    if not np.isfinite(lp).all():
        problems.append("log_probs holds non-finite values")
    else:
        # in the file's float32: a float64 copy of (M, N, C) would be 8 GB for 20 ImageNet members
        worst = float(torch.from_numpy(lp).logsumexp(dim=-1).abs().max())
        if worst > NORMALIZED:
            problems.append(
                f"log_probs are not normalized over the {classes} classes (log of the summed "
                f"probabilities up to {worst:.3g})"
            )
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (n,):
        problems.append(f"labels is {labels.dtype} {labels.shape}; expected integers ({n},)")
    elif n and not (labels.min() >= 0 and labels.max() < classes):
        problems.append(f"labels outside 0..{classes - 1} ({labels.min()}..{labels.max()})")
    # MC dropout's later members share the first one's weights: 0 bits each
    if member_bits.shape != (members,) or (member_bits < 0).any() or member_bits[0] <= 0:
        problems.append(
            f"member_bits is {member_bits.tolist()}; expected one count per member ({members},), "
            "the first positive, or the memory would be miscounted"
        )
    shared = run.get("member_shared_bits")
    if shared is not None and (shared.shape != (members,) or (shared < 0).any() or shared[0] <= 0):
        problems.append(
            f"member_shared_bits is {shared.tolist()}; expected one count per member "
            f"({members},), the first positive"
        )
    if "budget" in run and run["budget"].shape != (members,):
        problems.append(f"budget has shape {run['budget'].shape}; expected ({members},)")
    if "member_seconds" in run and run["member_seconds"].shape != (members,):
        problems.append(
            f"member_seconds has shape {run['member_seconds'].shape}; expected ({members},)"
        )
    if "calibration_log_probs" in run:
        calib, calib_labels = run["calibration_log_probs"], run.get("calibration_labels")
        if (
            calib_labels is None
            or calib.ndim != 3
            or calib.shape[0] != members
            or (calib.shape[2] != classes or calib_labels.shape != (calib.shape[1],))
        ):
            problems.append(
                f"calibration_log_probs {calib.shape} and calibration_labels "
                f"{None if calib_labels is None else calib_labels.shape} do not match "
                f"{members} members of {classes} classes"
            )
    if (method := str(run["method"])) not in RUN_NAMES:
        # a members folder's rounding: the predictions files of versions before the registry's
        # names reached them, made again by their stage
        made_again = (
            f" (remake it: its run is now {ROUNDING_RUNS[method]!r})"
            if method in ROUNDING_RUNS
            else ""
        )
        problems.append(f"unknown method {method!r}{made_again}")
    return problems


def score_run(run: dict) -> list[dict]:
    """Rows for ensemble sizes 1..M of one predictions file."""
    log_probs = torch.from_numpy(run["log_probs"])  # (M, N, C)
    labels = torch.from_numpy(run["labels"])  # (N,)
    bits = int(run["bits"])
    common = {
        "model": str(run["model"]),
        "optimizer": str(run["optimizer"]) if "optimizer" in run else "adamw",
        "params": int(run["params"]),
        "precision": str(run["format"]) if "format" in run else int_name(bits) if bits else FP32,
        "method": str(run["method"]),
        "seed": int(run["seed"]),
        "backward_passes": int(run["backward_passes"]),
    }
    calibration = None
    if "calibration_log_probs" in run:
        calibration = (
            torch.from_numpy(run["calibration_log_probs"]),
            torch.from_numpy(run["calibration_labels"]),
        )
    rows = []
    for m in range(1, log_probs.shape[0] + 1):
        row = {**common, "members": m, **metrics.score(log_probs[:m], labels)}
        row["memory_bits"] = int(run["member_bits"][:m].sum())
        shared = run.get("member_shared_bits", run["member_bits"])  # nothing shared: the same
        # one member alone is stored as itself; m >= 2 as one base and m planes
        row["memory_bits_shared"] = int(shared[:m].sum() if m > 1 else run["member_bits"][0])
        row["forward_passes"] = m
        if "budget" in run:
            row["backward_passes"] = int(run["budget"][:m].max())
        if "member_seconds" in run:
            row["infer_us"] = 1e6 * float(run["member_seconds"][:m].sum()) / len(labels)
        if calibration is not None:
            row.update(
                temperature_scaled(log_probs[:m], labels, calibration[0][:m], calibration[1])
            )
        rows.append(row)
    return rows


def temperature_scaled(log_probs, labels, calib_log_probs, calib_labels) -> dict[str, float]:
    """The ensemble's temperature, fit on the calibration split, and its test NLL and ECE."""
    temperature = fit_temperature(calib_log_probs, calib_labels)
    at_t = scaled(log_probs, temperature)
    return {
        "temperature": temperature,
        "nll_ts": metrics.nll(at_t, labels),
        "ece_ts": metrics.ece(at_t, labels),
    }


def score_files(paths: list[str | Path]) -> pd.DataFrame:
    rows = [row for path in paths for row in score_run(load_predictions(path))]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(
        ["model", "optimizer", "precision", "method", "seed", "members"], kind="stable"
    )


@dataclass(frozen=True, kw_only=True)
class ScoreJob(Job):
    """Predictions files scored into one CSV."""

    preds: tuple[str, ...] = setting(help="the predictions files")
    out: str = setting(help="the scores CSV written")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.preds:
            raise ValueError("no predictions files to score")


def run(job: ScoreJob) -> None:
    """Score the job's predictions files into its CSV."""
    frame = score_files(list(job.preds))
    write_with(job.out, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6f"))
    print(f"wrote {job.out}: {len(frame)} rows from {len(job.preds)} predictions files")


def main(argv: list[str] | None = None) -> None:
    run(from_cli(ScoreJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
