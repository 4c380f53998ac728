"""What a fast source's trainer starts from and writes (Figures 4, 5, 9, Table 5): the options'
:class:`Setting`, the :class:`FastJob`, the :class:`Sources` folder and the runs' resumable states.
The trainers are the fast sources' modules (``lpe.methods``: ``sse``, ``csgld``, ``de``,
``multiivon``, ``batchensemble``).

Every method fine-tunes the same trained checkpoint with the SGD/IVON settings of the SWAG/IVON
figures, one "run" being ``epochs`` epochs of them, and yields an ordered list of FP32 *sources*,
each recording the training budget spent when it exists (cumulative backward passes, pre-training
included). A cycle costs one run, so SSE with c snapshots, CSGLD with c samples, a DE of c runs
and MultiIVON with c runs all cost the same.

A fast source's module declares its trainer in its spec (``SPEC.fast``, ``lpe.methods.FastSource``):

- ``settings``: its own config keys (``fast.<name>.*``) -> its options (``lpe.core.settings``);
- ``options``: its own options, as :class:`Setting` values (the ``fast`` stage offers each as a
  flag beside the shared ones; the trainer never sees a command line);
- ``check(options)``: a problem with the options (a mapping: option name -> value), or None;
- ``train(job)``: its sources, added to ``job.sources``; returns the settings its manifest records.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lpe.core.resume import Resume
from lpe.models.checkpoints import save_checkpoint


@dataclass(frozen=True)
class Setting:
    """One option of a trainer: its name (``lr_candidates``), the type of one value, its default,
    ``many`` when it takes a list of values, and what it means."""

    name: str
    type: type
    default: Any
    help: str
    many: bool = False


class Sources:
    """Writes a method's sources into a folder, tracking the cumulative budget."""

    def __init__(self, folder: Path, method: str, pretrain_passes: int) -> None:
        self.folder, self.method = folder, method
        self.pretrain_passes = self.spent = pretrain_passes
        self.entries: list[dict] = []

    def add(self, model: torch.nn.Module, summary: dict, members: int = 1) -> None:
        name = f"source{len(self.entries):02d}.safetensors"
        summary = {**summary, "backward_passes": self.spent}
        save_checkpoint(self.folder / name, model, summary)
        self.entries.append({"file": name, "backward_passes": self.spent, "members": members})
        print(f"{self.method} source {len(self.entries)}: {self.spent:,} backward passes")

    def manifest(self, settings: dict) -> dict:
        return {
            "method": self.method,
            "pretrain_backward_passes": self.pretrain_passes,
            "sources": self.entries,
            "settings": settings,
        }


class RunResumes:
    """The resumable states of a method's runs: ``FOLDER/<run>.pt`` each (``lpe.core.resume``)."""

    def __init__(self, folder: str | None, every: int) -> None:
        self.folder, self.every = (Path(folder) if folder else None), every

    def path(self, name: str) -> Path | None:
        return self.folder / f"{name}.pt" if self.folder else None

    def run(self, name: str, fingerprint: dict) -> Resume:
        return Resume(self.path(name), self.every, fingerprint)

    def done(self) -> None:
        if self.folder is not None and self.folder.is_dir():
            shutil.rmtree(self.folder)


@dataclass
class FastJob:
    """What a trainer starts from: the run's options (name -> value: the shared fine-tuning ones,
    ``runs`` and the trainer's own options), the trained checkpoint (``state``, ``info``), the
    data, the device, the sources being written and the runs' resumable states."""

    options: Mapping[str, Any]
    state: dict
    info: object
    data: object
    device: torch.device
    sources: Sources
    resumes: RunResumes
