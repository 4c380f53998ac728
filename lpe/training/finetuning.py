"""Fine-tuning a checkpoint with one of the registered methods (``lpe.methods``); posterior files.

All start from the same trained checkpoint and see the same minibatch order (seeded), in the one
loop of ``lpe.training.loop``. ``sgd``, ``swag`` and ``ivon`` make the solutions and posteriors of
Figures 2-8 (the SGD solution is the LPE-BSR centre of Figure 2's first panel; SWAG's is its SWA
mean and IVON's its mean, each with a posterior file); ``sse`` and ``csgld`` take a snapshot at
the end of every cycle (Figures 4, 5, 9, the fast sources' trainers); the solution is the last.

A run's settings are :class:`FinetuneConfig`: the run's length and seed, and its method's own
settings dataclass. Every random draw comes from the seed: the minibatch order from an explicit
generator, IVON's weight noise (drawn by ``ivon-opt`` from torch's global generator) inside
``torch.random.fork_rng``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from lpe.core.artifacts import ArtifactError, load_tensors, save_tensors
from lpe.core.jobs import Job, setting
from lpe.core.resume import Resume
from lpe.members.files import member_seed
from lpe.models.checkpoints import load_checkpoint
from lpe.training.loop import Method, Plan, evaluate_on, fit

POSTERIOR_KIND = "lpe-posterior"

# The fine-tuning methods (the finetune stage's --optimizer) by name, and the posterior types by
# the name their files record. Each method's module registers itself (``lpe.methods``, whose
# ``load_all`` imports them all): this layer runs methods without knowing them, as timm's
# factory builds models its model modules register.
FINETUNING: dict[str, type[Method]] = {}
POSTERIORS: dict[str, type] = {}


def finetuning_method(cls: type[Method]) -> type[Method]:
    """Register ``cls`` (its ``name``, its ``Settings``) as a fine-tuning method."""
    FINETUNING[cls.name] = cls
    return cls


def posterior_type(cls: type) -> type:
    """Register ``cls`` (its ``kind``, ``from_file``) as a posterior file's type."""
    POSTERIORS[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning run: its method (``optimizer``), length, seed and the method's settings
    (an instance of ``FINETUNING[optimizer].Settings``); :meth:`of` builds one by field names."""

    optimizer: str
    epochs: int
    batch_size: int
    seed: int
    settings: object

    def __post_init__(self) -> None:
        problems, method = [], FINETUNING.get(self.optimizer)
        if method is None:
            problems.append(f"optimizer must be one of {tuple(FINETUNING)}, got {self.optimizer!r}")
        elif not isinstance(self.settings, method.Settings):
            problems.append(f"{self.optimizer} takes {method.Settings.__name__}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        if problems:
            raise ValueError("bad fine-tuning settings: " + "; ".join(problems))

    @classmethod
    def of(
        cls, optimizer: str = "sgd", epochs: int = 3, batch_size: int = 128, seed: int = 0, **values
    ) -> FinetuneConfig:
        """The run with ``values`` for its method's settings fields (``lr``, ``swag_rank``, ...);
        values of other methods' fields are ignored, unknown names refused."""
        unknown = set(values) - set(settings_fields())
        if unknown:
            raise ValueError(f"bad fine-tuning settings: unknown {sorted(unknown)}")
        if optimizer not in FINETUNING:
            raise ValueError(
                f"bad fine-tuning settings: optimizer must be one of "
                f"{tuple(FINETUNING)}, got {optimizer!r}"
            )
        settings_type = FINETUNING[optimizer].Settings
        own = {f.name: values[f.name] for f in fields(settings_type) if f.name in values}
        return cls(optimizer, epochs, batch_size, seed, settings_type(**own))

    @property
    def plan(self) -> Plan:
        return Plan(self.epochs, self.batch_size, self.seed)

    def method(self):
        """The run's :class:`~lpe.training.loop.Method` (fresh state)."""
        return FINETUNING[self.optimizer](self.settings, self.plan)


def settings_fields() -> dict[str, object]:
    """Every settings field of every registered fine-tuning method, with its default (a flag
    each)."""
    return {f.name: f.default for m in FINETUNING.values() for f in fields(m.Settings)}


def validate(model, data, device) -> dict[str, float]:
    """NLL, ERR, ECE on the data's selection split (validation, or an image folder's holdout)."""
    return evaluate_on(model, *data.inputs(data.selection_split), device)


def save_posterior(path, posterior, solution_sha256: str) -> None:
    meta = {"type": posterior.kind, **posterior.metadata()}
    if "hessian_moved" in meta:
        print(
            "IVON Hessian / hess_init: "
            + ", ".join(f"{k} {v:.3g}" for k, v in meta["hessian_moved"].items())
        )
    metadata = {"lpe_kind": POSTERIOR_KIND, "solution_sha256": solution_sha256}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    save_tensors(path, posterior.tensors(), metadata)


def load_posterior(path) -> tuple[object, dict[str, str]]:
    tensors, meta = load_tensors(path, "posterior file")
    if meta.get("lpe_kind") != POSTERIOR_KIND or "type" not in meta:
        raise ArtifactError(f"{path} is not an LPE posterior file")
    if json.loads(meta["type"]) not in POSTERIORS:
        raise ArtifactError(
            f"{path} holds a {json.loads(meta['type'])!r} posterior, a type no "
            f"loaded method registers ({sorted(POSTERIORS)}; lpe.methods.load_all "
            "loads the suite's)"
        )
    written = {k: v for k, v in meta.items() if k != "solution_sha256" and not k.startswith("lpe_")}
    recorded = {k: json.loads(v) for k, v in written.items()}
    return POSTERIORS[recorded["type"]].from_file(tensors, recorded), meta


def load_solution(checkpoint, posterior_path):
    """A fine-tuned solution's state, info and posterior, refusing a posterior of another one."""
    state, info = load_checkpoint(checkpoint)
    posterior, meta = load_posterior(posterior_path)
    if meta["solution_sha256"] != info.sha256:
        raise ValueError(
            f"{posterior_path} belongs to another solution than {checkpoint}; "
            "delete both and rerun the workflow"
        )
    return state, info, posterior


@dataclass(frozen=True, kw_only=True)
class RunSettings(Job):
    """A fine-tuning run's length and seed (the finetune stage's job part; the config's bma
    keys). The optimizer is the job's (a wildcard), not a setting."""

    epochs: int = setting(3, "passes over the training set", config="bma.epochs")
    batch_size: int = setting(128, "minibatch size", config="bma.batch_size")
    seed: int = setting(0, "minibatch order, IVON's weight noise", config="bma.seed")


RUN_FIELDS = {"optimizer": "sgd", **{f.name: f.default for f in fields(RunSettings)}}
RUN_KEYS = {f.metadata["config"]: f.name for f in fields(RunSettings)}


def method_fields() -> list[tuple[str, type, Any]]:
    """Every registered method's settings fields, each once, as ``dataclasses.make_dataclass``
    takes them (name, annotation, field): what a stage's job adds to take any method's settings
    (``lpe.stages.finetune.FinetuneJob``, ``lpe.stages.fast_train``)."""
    made = {}
    for method in FINETUNING.values():
        hints = typing.get_type_hints(method.Settings)
        for f in fields(method.Settings):
            field = dataclasses.field(default=f.default, metadata=f.metadata)
            made.setdefault(f.name, (f.name, hints[f.name], field))
    return list(made.values())


def settings_keys() -> dict[str, str]:
    """Config key -> field name, of the run and of every registered method's settings (each
    settings field names its key: ``lpe.core.jobs.setting``)."""
    keys = dict(RUN_KEYS)
    for method in FINETUNING.values():
        keys.update(
            {
                f.metadata["config"]: f.name
                for f in fields(method.Settings)
                if f.metadata.get("config")
            }
        )
    return keys


def finetune_config(options: Mapping[str, Any], **override) -> FinetuneConfig:
    """The run ``options`` (name -> value, such as a stage's flags) describe, with ``override``
    (field name -> value) on top; names that are not a run's field are ignored."""
    names = {**RUN_FIELDS, **settings_fields()}
    values = {name: options[name] for name in names if name in options}
    return FinetuneConfig.of(**{**values, **override})


def run_finetune(
    state, info, data, cfg: FinetuneConfig, device, *, resume_path=None, checkpoint_every: int = 0
):
    """Fine-tune a fresh model from ``state`` with every random draw seeded by ``cfg.seed``.

    Returns (model on the CPU, summary for its checkpoint, posterior or None, snapshots); the
    summary's backward passes are the starting checkpoint's plus the fine-tuning's, and
    ``snapshots`` lists, for ``sse`` and ``csgld``, each cycle's final weights (CPU copies) with
    the backward passes the run had spent. With ``resume_path``, the run's state is saved there
    every ``checkpoint_every`` steps and at its end, and continued from when it exists (the
    caller deletes it once its outputs are written).
    """
    method = cfg.method()  # refuses settings that cannot work before the model is built
    model = info.build()
    model.load_state_dict(state)
    fingerprint = {"finetune": asdict(cfg), "start": info.sha256, "train_size": data.train_size}
    resume = Resume(resume_path, checkpoint_every, fingerprint)

    def watch(epoch: int) -> str:
        return f"epoch {epoch + 1}/{cfg.epochs}: val nll {validate(model, data, device)['nll']:.4f}"

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # IVON draws its weight noise from the global generator
        backward_passes = fit(
            model,
            data,
            method,
            cfg.plan,
            device,
            resume=resume,
            desc=f"finetune {cfg.optimizer}",
            on_epoch=watch,
        )
        posterior = method.posterior(model)
    summary = {
        "model": info.model,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "optimizer": cfg.optimizer,
        "backward_passes": info.backward_passes + backward_passes,
        "finetune": asdict(cfg),
        "val": validate(model, data, device),
    }
    return model.cpu(), summary, posterior, method.snapshots


def draw(posterior, seed: int, index: int, swag_scale: float = 0.5) -> torch.Tensor:
    """Member ``index`` of the BMA ensemble with seed ``seed``: one flat weight vector."""
    generator = torch.Generator().manual_seed(member_seed(seed, index))
    # FP32 whatever the forwards' precision: SWAG's low-rank product would otherwise run at the
    # autocast dtype of a CPU stage (--dtype bfloat16)
    with torch.autocast("cpu", enabled=False):
        if posterior.scaled:  # SWAG's draws take a scale (lpe.methods.swag)
            return posterior.sample(generator, scale=swag_scale)
        return posterior.sample(generator)
