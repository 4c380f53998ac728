"""Run-time choices of a stage: device and thread count (never part of the experiment config)."""

from __future__ import annotations

import argparse

import numba
import torch


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--device``: how a stage runs, never what it computes."""
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu' and 'cuda[:i]' are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def set_threads(threads: int) -> None:
    """Fix the threads of torch and of the numba kernels to the job's share of the machine.

    torch's reduction order, hence its numbers, depend on its thread count; the numba kernels give
    the same numbers for any count, but a parallel region wider than the job's share makes its
    idle OpenMP workers spin on cores that other jobs are using (seen here: 7x slower predicts).
    Snakemake passes the rule's ``threads``; the workflow declares one thread per job so that
    results do not depend on how many jobs run side by side.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
