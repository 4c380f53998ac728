"""Run-time choices of a stage: device and thread count (never part of the experiment config)."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu' and 'cuda[:i]' are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads: the reduction order, hence the numbers, depend on it.

    Snakemake passes the rule's ``threads`` here; the workflow declares one thread per job so
    that results do not depend on how many jobs run side by side.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
