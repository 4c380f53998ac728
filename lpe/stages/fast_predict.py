"""The ``fast_predict`` stage: a fast source's predictions, with and without LPE-BSR (Figures 4, 5,
9; Table 5).

``--sources DIR --data DATA --out PREDS.npz``: the FP32 predictions of every source of a
``lpe.stages.fast_train`` folder, in order. With ``--format F --copies k --seeds s...
--members-out MDIR... --out PREDS...`` instead: per seed, ``k`` LPE-BSR copies of every source in
format ``F`` (``int5``; member files under ``MDIR/sourceNN``, made as ``lpe.stages.generate``
makes them), ordered source by source; ``--fp32-out FP32.npz`` adds the FP32 predictions in the
same run. A predictions file carries each member's ``budget``: LPE-BSR adds none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpe.cli.jobs import from_cli
from lpe.core.artifacts import MANIFEST, ArtifactError, atomic_dir, read_manifest, read_metadata
from lpe.core.jobs import setting
from lpe.core.runtime import autocast
from lpe.evaluation import spine
from lpe.evaluation.prediction import Calibrated, predict_fp32, predict_members
from lpe.evaluation.predictions_file import write_evaluated
from lpe.evaluation.spine import Evaluated, batches
from lpe.formats.number_formats import FORMATS
from lpe.members.files import derive_seed
from lpe.members.sets import MemberFormat, generate, seed_runs_problem
from lpe.methods import BY_NAME, fast_sources, with_lpe
from lpe.methods.batchensemble import batch_ensemble_bits, load_batch_ensemble, per_member, repeated
from lpe.models.checkpoints import checkpoint_info


def read_sources(folder: str | Path) -> dict:
    manifest = read_manifest(folder, "sources folder")
    path = Path(folder) / MANIFEST
    if manifest.get("method") not in fast_sources() or not manifest.get("sources"):
        raise ArtifactError(f"{path} is not a sources manifest of {fast_sources()}")
    return manifest


def _predict_batch_ensemble(path, x, batch_size, device, calib_x=None) -> tuple[Evaluated, object]:
    model, members, info = load_batch_ensemble(path)
    model.to(device)

    def log_probs(inputs):
        """``(K, N, C)``: every member on every batch of ``inputs``, K members per forward pass
        (the evaluation spine's forward; batches are stacked inputs-first, then members-first)."""
        chunks = (repeated(xb, members) for xb in batches(inputs, batch_size))

        def read(output):
            return per_member(output, members).transpose(0, 1)

        with spine.evaluating(model):
            out = spine.forward_log_probs(model, chunks, device, read=read)
        return out.transpose(0, 1).contiguous()

    start = time.perf_counter()
    lp = log_probs(x)
    took = (time.perf_counter() - start) / members  # one batched forward for all members
    calibration = None if calib_x is None else log_probs(calib_x)
    done = Evaluated(lp, batch_ensemble_bits(model, members), [took] * members, calibration)
    return done, info


def _joined(parts: list[Evaluated]) -> Evaluated:
    """The members of several evaluated sources, in order, as one :class:`Evaluated`."""
    calibration = [p.calibration for p in parts]
    return Evaluated(
        torch.cat([p.log_probs for p in parts]),
        [int(b) for p in parts for b in p.bits],
        [t for p in parts for t in p.seconds],
        None if calibration[0] is None else torch.cat(calibration),
    )


def predict_fp32_sources(folder, x, batch_size, device, calib_x=None):
    """Every source in order, evaluated (:class:`Evaluated`), their budgets and first info."""
    manifest = read_sources(folder)
    parts, budget, first = [], [], None
    for source in tqdm(manifest["sources"], desc=manifest["method"], mininterval=5):
        path = Path(folder) / source["file"]
        if "batch_ensemble" in read_metadata(path, "checkpoint"):
            done, info = _predict_batch_ensemble(path, x, batch_size, device, calib_x)
        else:
            done, info = predict_fp32(path, x, batch_size, device, calib_x)
        parts.append(done)
        budget += [source["backward_passes"]] * len(done.log_probs)
        first = first or info
    return manifest, _joined(parts), budget, first


def predict_copies(
    folder, members_out, fmt, copies, seed, *, policy, x, batch_size, device, calib_x=None
):
    """``copies`` LPE-BSR members of every source, written to ``members_out`` (one shared-base
    ensemble file per source) and evaluated; also the members' bits under the shared-base
    accounting (each source's copies share its base)."""
    manifest = read_sources(folder)
    registered = BY_NAME[manifest["method"]]
    if not registered.lpe_copies:  # BatchEnsemble: its members share weights
        raise ValueError(f"LPE-BSR copies of {registered.label} are not part of the paper's design")
    parts, budget, shared, first = [], [], [], None
    with atomic_dir(members_out) as tmp:
        for c, source in enumerate(manifest["sources"]):
            checkpoint = Path(folder) / source["file"]
            out = tmp / f"source{c:02d}"
            copies_seed = derive_seed("source", seed, c)
            made = generate(
                checkpoint,
                out,
                fmt,
                "bsr",
                copies_seed,
                members=copies,
                policy=policy,
                layout="shared-base",
            )
            done, _, info = predict_members(
                checkpoint, out, x, batch_size, device, calibration_x=calib_x
            )
            parts.append(done)
            budget += [source["backward_passes"]] * len(done.log_probs)
            shared += made["member_shared_bits"]
            first = first or info
    return manifest, _joined(parts), budget, first, shared


@dataclass(frozen=True, kw_only=True)
class FastPredictJob(MemberFormat, Calibrated):
    """A fast source's predictions: FP32, or its LPE-BSR copies (see the module's docstring)."""

    sources: str = setting(help="a fast_train sources folder")
    format: str | None = setting(
        None,
        f"make LPE-BSR copies in this number format: {', '.join(FORMATS)} (and int2..int16); "
        "omit for the FP32 sources",
    )
    copies: int = setting(5, "LPE-BSR copies per source (k)")
    seeds: tuple[int, ...] = setting((0,), "LPE-BSR ensemble seeds")
    members_out: tuple[str, ...] = setting((), "per seed, the copies' folder (with --format)")
    out: tuple[str, ...] = setting(help="the predictions file (per seed with --format)")
    fp32_out: str | None = setting(None, "with --format: also the FP32 predictions of the sources")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.copies < 1:
            raise ValueError(f"--copies must be >= 1, got {self.copies}")
        if self.format is None:
            if len(self.out) != 1 or self.fp32_out or self.members_out:
                raise ValueError(
                    "without --format: one --out (the FP32 predictions), no --fp32-out"
                )
            return
        if not self.members_out:
            raise ValueError("--format needs --members-out (where the member files go)")
        if problem := seed_runs_problem(list(self.seeds), self.members_out, self.out):
            raise ValueError(problem)


def run(job: FastPredictJob) -> None:
    """The job's FP32 predictions and, with a format, its LPE-BSR copies' per seed."""
    device = job.start()
    first = Path(job.sources) / read_sources(job.sources)["sources"][0]["file"]
    (x, labels), (calib_x, calib_labels) = job.inputs_and_calibration(checkpoint_info(first))
    fp32_out = job.out[0] if job.format is None else job.fp32_out
    if fp32_out:
        with autocast(device, job.dtype):
            manifest, done, budget, info = predict_fp32_sources(
                job.sources, x, job.batch_size, device, calib_x
            )
        record = {"method": manifest["method"], "bits": 0, "seed": 0}
        _write(fp32_out, done, labels, calib_labels, budget, info=info, run=record)
    if job.format is None:
        return
    fmt, policy = job.number_format(), job.policy()
    for seed, members_out, out in zip(job.seeds, job.members_out, job.out, strict=True):
        with autocast(device, job.dtype):
            manifest, done, budget, info, shared = predict_copies(
                job.sources,
                members_out,
                fmt,
                job.copies,
                seed,
                policy=policy,
                x=x,
                batch_size=job.batch_size,
                device=device,
                calib_x=calib_x,
            )
        record = {
            "method": with_lpe(manifest["method"]),
            "bits": fmt.code_bits,
            "seed": seed,
            "member_shared_bits": np.asarray(shared, dtype=np.int64),
        }
        _write(out, done, labels, calib_labels, budget, info=info, run=record)


def _write(out, done: Evaluated, labels, calib_labels, budget, *, info, run) -> None:
    run["budget"] = np.asarray(budget, dtype=np.int64)
    write_evaluated(out, done, labels, info, run, calibration_labels=calib_labels)


def main(argv: list[str] | None = None) -> None:
    run(from_cli(FastPredictJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
