"""The fast sources' trainers (Figures 4, 5, 9, Table 5): one module per source, named by the
registry (``lpe.sources.registry``: a fast source's ``trainer``).

Every method fine-tunes the same trained checkpoint with the SGD/IVON settings of the SWAG/IVON
figures, one "run" being ``epochs`` epochs of them, and yields an ordered list of FP32 *sources*,
each recording the training budget spent when it exists (cumulative backward passes, pre-training
included). A cycle costs one run, so SSE with c snapshots, CSGLD with c samples, a DE of c runs
and MultiIVON with c runs all cost the same.

A trainer module has:

- ``SETTINGS``: its own config keys (``fast.<name>.*``) -> its options (``lpe.core.settings``);
- ``add_arguments(parser)``: its own flags (the shared ones are the ``fast`` stage's);
- ``check(args)``: a problem with its flags, or None;
- ``train(job)``: its sources, added to ``job.sources``; returns the settings its manifest records.

A new fast source is its module here and its entry in the registry: the ``fast`` stage and the
workflow find it there.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from lpe.core.resume import Resume
from lpe.models.checkpoints import save_checkpoint
from lpe.sources.registry import BY_NAME, family


def trainer(method: str):
    """The trainer module of fast source ``method``."""
    if method not in BY_NAME or BY_NAME[method].family != "fast":
        raise ValueError(f"unknown fast source {method!r}; the registry has "
                         f"{[s.name for s in family('fast')]}")  # fmt: skip
    return importlib.import_module(BY_NAME[method].trainer)


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
    """What a trainer starts from: the stage's flags, the trained checkpoint (``state``,
    ``info``), the data, the device, the sources being written and the runs' resumable states."""

    args: object
    state: dict
    info: object
    data: object
    device: torch.device
    sources: Sources
    resumes: RunResumes
