"""The ``fast`` stage: fast ensembles as member sources, with and without LPE-BSR (Figures 4, 5, 9).

Each fast source of the registry (``lpe.methods``) has a trainer in its module there
(``sse``, ``csgld``, ``de``, ``multiivon``, ``batchensemble``): it
fine-tunes the same trained checkpoint with the SGD/IVON settings of the SWAG/IVON figures, one
"run" being ``epochs`` epochs of them, into an ordered list of FP32 *sources*, each with the
training budget spent when it exists (cumulative backward passes, pre-training included).

Subcommands:

- ``train --method M --checkpoint PRE --data DATA --out DIR``: the sources as checkpoints
  ``DIR/source00.safetensors, ...`` plus ``DIR/manifest.json``, written atomically.
- ``predict --sources DIR --data DATA --out PREDS.npz``: the FP32 predictions of every source in
  order. With ``--bits b --copies k --seeds s... --members-out MDIR... --out PREDS...`` instead:
  per seed, ``k`` LPE-BSR copies of every source (member files under ``MDIR/sourceNN``, made by
  ``lpe.stages.generate``), ordered source by source; ``--fp32-out FP32.npz`` adds the FP32
  predictions in the same run. A predictions file carries each member's ``budget``: LPE-BSR adds
  none.

``--help`` on each subcommand lists the settings (``train --method M --help``: M's own too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpe.cli.flags import (
    CALIBRATED_SETTINGS,
    DATA_SETTINGS,
    FINETUNE_SETTINGS,
    QUANT_SETTINGS,
    RESUME_SETTINGS,
    add_bits_argument,
    add_calibration_arguments,
    add_data_arguments,
    add_finetune_arguments,
    add_policy_arguments,
    add_resume_arguments,
    add_runtime_arguments,
    add_setting_arguments,
    apply_settings,
    argument_value,
    check_calibration,
    member_format,
    open_stage_data,
    subcommand,
)
from lpe.core.artifacts import (
    MANIFEST,
    ArtifactError,
    atomic_dir,
    read_manifest,
    read_metadata,
    write_manifest,
)
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.data.datasets import SPLITS
from lpe.evaluation.prediction import Evaluated, batches, predict_fp32, predict_members
from lpe.evaluation.predictions_file import write_evaluated
from lpe.members.files import derive_seed
from lpe.members.sets import generate, seed_runs_problem
from lpe.methods import BY_NAME, family, load
from lpe.methods.batchensemble import batch_ensemble, member_log_probs
from lpe.models.checkpoints import checkpoint_info, load_checkpoint
from lpe.training.sources import FastJob, RunResumes, Sources


def fast_methods() -> tuple[str, ...]:
    """The fast sources of the registry (read when used: a test may register one)."""
    return tuple(s.name for s in family("fast"))


def train(args) -> dict:
    """The sources of ``args.method`` (its trainer module), written atomically to ``args.out``."""
    state, info = load_checkpoint(args.checkpoint)
    data = open_stage_data(args, info)
    # one resumable state per run, in the --resume folder (kept until the sources are written)
    resumes = RunResumes(args.resume, args.checkpoint_every)
    with atomic_dir(args.out) as tmp:
        sources = Sources(tmp, args.method, info.backward_passes)
        job = FastJob(vars(args), state, info, data, resolve_device(args.device), sources, resumes)
        settings = load(args.method).train(job)
        manifest = sources.manifest({"runs": args.runs, **settings})
        write_manifest(tmp, manifest)
    resumes.done()
    return manifest


def read_sources(folder: str | Path) -> dict:
    manifest = read_manifest(folder, "sources folder")
    path = Path(folder) / MANIFEST
    if manifest.get("method") not in fast_methods() or not manifest.get("sources"):
        raise ArtifactError(f"{path} is not a sources manifest of {fast_methods()}")
    return manifest


def load_batch_ensemble(path: str | Path) -> tuple[torch.nn.Module, int, object]:
    state, info = load_checkpoint(path)
    members = json.loads(read_metadata(path, "checkpoint")["batch_ensemble"])
    model = batch_ensemble(info.build(), members)
    model.load_state_dict(state, strict=True)
    return model, members, info


def batch_ensemble_bits(model: torch.nn.Module, members: int) -> list[int]:
    """FP32 storage: member 1 carries the shared weights, each member its own fast weights."""
    fast = sum(
        p.numel()
        for n, p in model.named_parameters()
        if n.rsplit(".", 1)[-1] in ("r", "s") or (n.endswith("bias") and p.dim() == 2)
    )
    total = sum(t.numel() for t in model.state_dict().values())
    per_member = fast // members
    return [32 * (total - fast + per_member)] + [32 * per_member] * (members - 1)


def _predict_batch_ensemble(path, x, batch_size, device, calib_x=None) -> tuple[Evaluated, object]:
    model, members, info = load_batch_ensemble(path)
    model.to(device)

    def log_probs(inputs):
        chunks = batches(inputs, batch_size)
        return torch.cat([member_log_probs(model, members, xb.to(device)).cpu() for xb in chunks],
                         dim=1)  # fmt: skip

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


def predict_copies(folder, members_out, fmt, copies, seed, *, policy, x, batch_size, device,
                   calib_x=None):  # fmt: skip
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
                layout="container",
            )
            done, _, info = predict_members(
                checkpoint, out, x, batch_size, device, calibration_x=calib_x
            )
            parts.append(done)
            budget += [source["backward_passes"]] * len(done.log_probs)
            shared += made["member_shared_bits"]
            first = first or info
    return manifest, _joined(parts), budget, first, shared


def predict(args) -> None:
    first = Path(args.sources) / read_sources(args.sources)["sources"][0]["file"]
    data = open_stage_data(args, checkpoint_info(first))
    x, labels = data.inputs(args.split, args.batch_size)
    calib_x, calib_labels = (
        data.inputs(data.selection_split, args.batch_size) if args.calibrate else (None, None)
    )
    device = resolve_device(args.device)
    fp32_out = args.out[0] if args.bits is None else args.fp32_out
    if fp32_out:
        with autocast(device, args.dtype):
            manifest, done, budget, info = predict_fp32_sources(
                args.sources, x, args.batch_size, device, calib_x
            )
        run = {"method": manifest["method"], "bits": 0, "seed": 0}
        _write(fp32_out, done, labels, calib_labels, budget, info=info, run=run)
    if args.bits is None:
        return
    fmt, policy = member_format(args)
    for seed, members_out, out in zip(args.seeds, args.members_out, args.out, strict=True):
        with autocast(device, args.dtype):
            manifest, done, budget, info, shared = predict_copies(
                args.sources, members_out, fmt, args.copies, seed, policy=policy, x=x,
                batch_size=args.batch_size, device=device, calib_x=calib_x,
            )  # fmt: skip
        run = {"method": f"{manifest['method']}+lpe-bsr", "bits": args.bits, "seed": seed,
               "member_shared_bits": np.asarray(shared, dtype=np.int64)}  # fmt: skip
        _write(out, done, labels, calib_labels, budget, info=info, run=run)


def _write(out, done: Evaluated, labels, calib_labels, budget, *, info, run) -> None:
    run["budget"] = np.asarray(budget, dtype=np.int64)
    write_evaluated(out, done, labels, info, run, calibration_labels=calib_labels)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def build_parser(argv: list[str] | None) -> argparse.ArgumentParser:
    """The two subcommands' flags; ``argv`` says which method's own flags and which config keys
    (``--settings``) they take."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train", help="a method's sources (checkpoints + manifest)")
    p.add_argument("--method", required=True, choices=fast_methods(),
                   help="the fast source (its own flags: train --method M --help)")  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="the trained checkpoint to start from")
    add_data_arguments(p)
    p.add_argument("--runs", type=_positive, default=4, help="runs, cycles or BE members (K)")
    method = argument_value(argv, "--method")
    if method in fast_methods():  # the method's own flags (its trainer module's; --help lists them)
        add_setting_arguments(p, load(method).OPTIONS)
    add_finetune_arguments(p, optimizer=False)  # the method decides
    add_resume_arguments(p)
    p.add_argument("--out", required=True, help="the sources folder")
    add_runtime_arguments(p, inference=False)
    q = commands.add_parser("predict", help="predictions of the sources, or of LPE-BSR copies")
    q.add_argument("--sources", required=True)
    add_data_arguments(q)
    q.add_argument("--split", default="test", choices=SPLITS)
    q.add_argument("--batch-size", type=int, default=1000)
    add_bits_argument(q, "make LPE-BSR copies at INT-b (omit for the FP32 sources)")
    q.add_argument("--copies", type=_positive, default=5, help="LPE-BSR copies per source (k)")
    q.add_argument(
        "--seeds", "--seed", type=int, nargs="+", default=[0], help="LPE-BSR ensemble seeds"
    )
    q.add_argument(
        "--members-out", nargs="+", default=[], help="per seed, the copies' folder (with --bits)"
    )
    add_policy_arguments(q)
    q.add_argument(
        "--out", nargs="+", required=True, help="the predictions file (per seed with --bits)"
    )
    q.add_argument("--fp32-out", help="with --bits: also the FP32 predictions of the sources")
    add_calibration_arguments(q, holdout=False)  # --holdout: the data flags'
    add_runtime_arguments(q)
    command = subcommand(argv)
    if command == "train":
        own = load(method).SETTINGS if method in fast_methods() else {}
        apply_settings(p, argv, {**DATA_SETTINGS, **FINETUNE_SETTINGS, **RESUME_SETTINGS,
                                 "fast.runs": "runs", **own})  # fmt: skip
    elif command == "predict":
        policy = QUANT_SETTINGS if argument_value(argv, "--bits") else {}  # LPE-BSR copies only
        apply_settings(q, argv, {**DATA_SETTINGS, **CALIBRATED_SETTINGS, **policy})
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command == "train":
        if problem := load(args.method).check(vars(args)):
            parser.error(problem)
        set_threads(args.threads)
        manifest = train(args)
        print(f"wrote {len(manifest['sources'])} {args.method} sources to {args.out}")
    else:
        check_calibration(parser, args)
        if args.bits is not None and not args.members_out:
            parser.error("--bits needs --members-out (where the member files go)")
        if args.bits is None and (len(args.out) != 1 or args.fp32_out or args.members_out):
            parser.error("without --bits: one --out (the FP32 predictions), no --fp32-out")
        if args.bits is not None and (
            problem := seed_runs_problem(args.seeds, args.members_out, args.out)
        ):
            parser.error(problem)
        set_threads(args.threads)
        predict(args)


if __name__ == "__main__":
    main()
