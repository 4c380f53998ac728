"""The predictions file every ensemble method ends in, and its writers.

A predictions file (``.npz``) holds, members first:

- ``log_probs``: float32 ``(M, N, C)`` log-softmax of each member;
- ``labels``: int64 ``(N,)``;
- ``member_bits``: int64 ``(M,)`` storage of each member (a full member each: the paper's
  accounting);
- for members stored as one shared-base ensemble file, ``member_shared_bits``: int64 ``(M,)``,
  the same storage under the shared-base accounting (``lpe.members.shared_base``: member 0 the
  base and its bit-plane, each other member its plane; the first m sum to an ensemble of m);
- scalars ``backward_passes``, ``params``, ``model``, ``optimizer`` (how the weights were
  obtained), ``bits`` (0 for FP32 members), ``method``, ``seed``, and for low precision members
  ``format`` (the number format's name, :mod:`lpe.formats.names`);
- where the stage timed them, ``member_seconds``: float64 ``(M,)`` wall time of each member's
  forward passes over the evaluated split (loading a member excluded; the stage's pinned threads);
- where the stage also predicted the calibration split (the data's selection split, never the
  evaluated one), ``calibration_log_probs`` ``(M, Nc, C)`` and ``calibration_labels`` ``(Nc,)``:
  what :mod:`lpe.evaluation.temperature` fits a temperature on.
"""

from __future__ import annotations

import numpy as np

from lpe.core.artifacts import write_with
from lpe.evaluation.spine import Evaluated
from lpe.methods import rounding_run
from lpe.models.factory import count_params


def member_run(manifest: dict) -> dict:
    """What a members folder's predictions file records besides the members: method (the
    registry name of its rounding's run: ``lpe-bsr`` for ``bsr`` members), format, bits, seed,
    and each member's bits under the shared-base accounting when it has them."""
    run = {
        "method": rounding_run(manifest["method"]),
        "format": manifest["format"],
        "bits": manifest["bits"],
        "seed": manifest["seed"],
    }
    if "member_shared_bits" in manifest:
        run["member_shared_bits"] = np.asarray(manifest["member_shared_bits"], dtype=np.int64)
    return run


def write_predictions(
    out,
    log_probs,
    labels,
    member_bits,
    info,
    *,
    run: dict,
    params=None,
    seconds=None,
    calibration=None,
) -> None:
    """The predictions file every ensemble method ends in (see the module docstring).

    ``params`` defaults to the parameter count of ``info.build()``; ``seconds`` are the members'
    forward wall times on the evaluated split; ``calibration`` is ``(log_probs, labels)`` of the
    calibration split.
    """
    arrays = {
        "log_probs": log_probs.numpy().astype(np.float32),  # (M, N, C)
        "labels": labels.numpy(),  # (N,)
        "member_bits": np.asarray(member_bits, dtype=np.int64),  # (M,)
        "backward_passes": np.asarray(info.backward_passes),
        "params": np.asarray(count_params(info.build()) if params is None else params),
        "model": np.asarray(info.model),
        "optimizer": np.asarray(info.optimizer),
        **{k: np.asarray(v) for k, v in run.items()},
    }
    if seconds is not None:
        arrays["member_seconds"] = np.asarray(seconds, dtype=np.float64)  # (M,)
    if calibration is not None:
        arrays["calibration_log_probs"] = calibration[0].numpy().astype(np.float32)  # (M, Nc, C)
        arrays["calibration_labels"] = calibration[1].numpy()  # (Nc,)
    write_with(out, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    print(f"wrote {out}: {log_probs.shape[0]} members x {log_probs.shape[1]} points")


def write_evaluated(out, done: Evaluated, labels, info, run: dict, *, calibration_labels=None):
    """``write_predictions`` of :class:`Evaluated` members (with their seconds and, when they
    were evaluated on it, the calibration split)."""
    calibration = None if done.calibration is None else (done.calibration, calibration_labels)
    write_predictions(
        out,
        done.log_probs,
        labels,
        done.bits,
        info,
        run=run,
        seconds=done.seconds,
        calibration=calibration,
    )
