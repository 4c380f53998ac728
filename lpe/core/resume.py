"""Resumable training: a loop's whole state saved every N steps, so a killed job restarts there.

A fine-tuning run of the paper profile lasts hours to days; a SLURM time limit or a preemption
would otherwise restart it from zero. :class:`Resume` saves, every ``every`` optimizer steps,
what the loop needs to continue exactly as if it had not stopped (weights, optimizer, scheduler,
generators, counters: the caller's ``state`` dict), atomically, with ``torch.save``; it is read
back with ``weights_only=True`` (no code runs on load). The file records the settings that made
it (``fingerprint``) and is refused if they differ. It is deleted when the run completes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lpe.core.artifacts import write_with


class ResumeError(ValueError):
    pass


class Resume:
    def __init__(self, path: str | Path | None, every: int, fingerprint: dict) -> None:
        if every < 0:
            raise ValueError(f"checkpoint interval must be >= 0 steps, got {every}")
        self.path = Path(path) if path else None
        self.every = every if self.path else 0
        self.fingerprint = fingerprint

    def load(self) -> dict | None:
        """The saved state, or None when there is none (or resuming is off)."""
        if not self.every or not self.path.is_file():
            return None
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") != self.fingerprint:
            raise ResumeError(
                f"{self.path} was saved by a run with other settings "
                f"({saved.get('fingerprint')}, not {self.fingerprint}); delete it and rerun"
            )
        print(f"resuming from {self.path} at step {saved['state']['step']}", flush=True)
        return saved["state"]

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def save(self, state: dict) -> None:
        """Save ``state`` (nothing without a path, or with the interval 0)."""
        if not self.every:
            return
        payload = {"fingerprint": self.fingerprint, "state": state}
        write_with(self.path, lambda tmp: torch.save(payload, tmp))

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def rng_state(device: torch.device) -> dict:
    """torch's global generators (IVON draws its weight noise from them)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
