"""The ``fast_train`` stage: a fast source's sources (Figures 4, 5, 9; Table 5).

Each fast source of the registry (``lpe.methods``) has a trainer in its module there
(``sse``, ``csgld``, ``de``, ``multiivon``, ``batchensemble``): it fine-tunes the same trained
checkpoint with the SGD/IVON settings of the SWAG/IVON figures, one "run" being ``epochs`` epochs
of them, into an ordered list of FP32 *sources*, each with the training budget spent when it
exists (cumulative backward passes, pre-training included).

Usage: ``python -m lpe.stages.fast_train --method M --checkpoint PRE --data DATA --out DIR``: the
sources as checkpoints ``DIR/source00.safetensors, ...`` plus ``DIR/manifest.json``, written
atomically. ``--method M --help`` lists the settings, M's own too. Their predictions, with and
without LPE-BSR copies: ``lpe.stages.fast_predict``.
"""

from __future__ import annotations

import argparse

from lpe.cli.flags import (
    DATA_SETTINGS,
    FINETUNE_SETTINGS,
    RESUME_SETTINGS,
    add_data_arguments,
    add_finetune_arguments,
    add_resume_arguments,
    add_runtime_arguments,
    add_setting_arguments,
    open_stage_data,
    positive_int,
)
from lpe.cli.jobs import apply_settings, argument_value
from lpe.core.artifacts import atomic_dir, write_manifest
from lpe.core.runtime import resolve_device, set_threads
from lpe.methods import fast_sources, load
from lpe.models.checkpoints import load_checkpoint
from lpe.training.sources import FastJob, RunResumes, Sources


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


def build_parser(argv: list[str] | None) -> argparse.ArgumentParser:
    """The stage's flags; ``argv`` says which method's own flags and config keys (``--settings``)
    it takes."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", required=True, choices=fast_sources(),
                   help="the fast source (its own flags: --method M --help)")  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="the trained checkpoint to start from")
    add_data_arguments(p)
    p.add_argument("--runs", type=positive_int, default=4, help="runs, cycles or BE members (K)")
    method = argument_value(argv, "--method")
    own = {}
    if method in fast_sources():  # the method's own flags (its module's; --help lists them)
        add_setting_arguments(p, load(method).OPTIONS)
        own = load(method).SETTINGS
    add_finetune_arguments(p, optimizer=False)  # the method decides
    add_resume_arguments(p)
    p.add_argument("--out", required=True, help="the sources folder")
    add_runtime_arguments(p, inference=False)
    apply_settings(p, argv, {**DATA_SETTINGS, **FINETUNE_SETTINGS, **RESUME_SETTINGS,
                             "fast.runs": "runs", **own})  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> None:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if problem := load(args.method).check(vars(args)):
        parser.error(problem)
    set_threads(args.threads)
    manifest = train(args)
    print(f"wrote {len(manifest['sources'])} {args.method} sources to {args.out}")


if __name__ == "__main__":
    main()
