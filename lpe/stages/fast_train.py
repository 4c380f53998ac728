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

import dataclasses
import functools
from dataclasses import dataclass

from lpe.cli.jobs import from_cli
from lpe.core.artifacts import atomic_dir, write_manifest
from lpe.core.jobs import Job, config_keys, setting
from lpe.core.runtime import Device
from lpe.data.inputs import StageData
from lpe.methods import fast_sources, load_all, spec
from lpe.models.checkpoints import load_checkpoint
from lpe.training.finetuning import RunSettings, method_fields
from lpe.training.sources import FastJob, RunResumes, Sources

load_all()  # the registered methods' settings become the job's fields


@dataclass(frozen=True, kw_only=True)
class FastTrainJob(RunSettings, StageData, Device):
    """A fast source's run: the fields shared by every method; --method picks the job of one
    method (its fields are the stage's flags). The job of one method
    (:func:`fast_train_job`) adds every fine-tuning method's settings and the method's own
    options, with the method's config keys (``fast.sse.momentum`` sets ``momentum``)."""

    chosen_by = "method"  # the command line's --method picks the job (lpe.cli.jobs.from_cli)

    method: str = setting(help="the fast source (its own flags: --method M --help)")
    checkpoint: str = setting(help="the trained checkpoint to start from")
    runs: int = setting(4, "runs, cycles or BE members (K)", config="fast.runs")
    out: str = setting(help="the sources folder")
    resume: str | None = setting(
        None, "folder of resumable states (one per run)", config="job.resume"
    )
    checkpoint_every: int = setting(
        0, "save the resumable state every N steps (0: never)", config="bma.checkpoint_every"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in fast_sources():
            raise ValueError(f"--method {self.method!r} is no fast source: {fast_sources()}")
        if self.runs < 1:
            raise ValueError(f"--runs must be >= 1, got {self.runs}")
        if problem := spec(self.method).fast.check(self.options()):
            raise ValueError(problem)

    def options(self) -> dict:
        """The run's options by name, as the method's trainer reads them (``FastJob``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def specialised(cls, method: str | None) -> type[Job]:
        """The job of ``method`` (a fast source's name; otherwise this base job, whose --method
        the parser then refuses)."""
        return fast_train_job(method) if method in fast_sources() else cls


def fast_train_job(method: str) -> type[FastTrainJob]:
    """The job of ``method``: the run's fields, every fine-tuning method's settings and the
    method's own options (its spec's ``fast.options``), each field also keyed by the method's
    config key where its ``fast.settings`` names one (read last: ``fast.sse.momentum`` over
    ``bma.sgd.momentum``).
    Made when first asked for, with the registry as it is then: a fast source registered later
    gets its own."""
    return _fast_train_job(method, fast_sources())


@functools.cache  # one class per method: jobs of one method compare equal
def _fast_train_job(method: str, sources: tuple[str, ...]) -> type[FastTrainJob]:
    trainer = spec(method).fast
    keys = {name: key for key, name in trainer.settings.items()}
    made = {field[0]: field for field in method_fields()}
    for option in trainer.options:
        hint = tuple[option.type, ...] if option.many else option.type | None
        made[option.name] = (option.name, hint, setting(option.default, option.help))
    for name, key in keys.items():  # the method's key is read after the fine-tuning one's
        _, hint, field = made[name]
        config = (*config_keys(field), key)
        made[name] = (
            name,
            hint,
            dataclasses.field(default=field.default, metadata={**field.metadata, "config": config}),
        )
    made["method"] = ("method", str, setting(help="the fast source", choices=sources))
    name = f"FastTrainJob_{method.replace('-', '_')}"
    return dataclasses.make_dataclass(
        name, list(made.values()), bases=(FastTrainJob,), frozen=True, kw_only=True
    )


def run(job: FastTrainJob) -> dict:
    """The sources of the job's method (its trainer module), written atomically to ``job.out``;
    returns their manifest."""
    device = job.start()
    state, info = load_checkpoint(job.checkpoint)
    data = job.open(info)
    # one resumable state per run, in the --resume folder (kept until the sources are written)
    resumes = RunResumes(job.resume, job.checkpoint_every)
    with atomic_dir(job.out) as tmp:
        sources = Sources(tmp, job.method, info.backward_passes)
        trainer = FastJob(job.options(), state, info, data, device, sources, resumes)
        settings = spec(job.method).fast.train(trainer)
        manifest = sources.manifest({"runs": job.runs, **settings})
        write_manifest(tmp, manifest)
    resumes.done()
    print(f"wrote {len(manifest['sources'])} {job.method} sources to {job.out}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    run(from_cli(FastTrainJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
