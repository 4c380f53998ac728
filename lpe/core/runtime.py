"""Run-time choices of a stage: device, thread count and inference precision."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import numba
import torch

from lpe.core.jobs import Job, setting
from lpe.core.numerics import describe

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: torch.device, dtype: str = "float32"):
    """Mixed-precision forwards at ``dtype`` (a no-op context for float32)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype == "float16" and device.type != "cuda":
        raise ValueError("float16 inference needs a CUDA device; use bfloat16 on the CPU")
    if device.type == "cuda":
        # what autocast leaves in FP32 (heads, lpe.models.factory.keep_head_fp32) may use TF32
        # tensor cores
        torch.set_float32_matmul_precision("high")
    return torch.autocast(device.type, dtype=DTYPES[dtype])


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
    print(describe(), file=sys.stderr, flush=True)  # in the log: the CPU path of these numbers


def keeping_threads(kernel, *args) -> None:
    """Run a parallel numba ``kernel`` and leave the caller's torch thread count as it was.

    numba's OpenMP threading layer, started by the first parallel kernel of a process, sets the
    process's OpenMP thread count to numba's (every core), and torch's with it: a program that
    ran torch on one thread found two after drawing one member, oversubscribed and 2x slower.
    numba's own count is left alone. The codes do not depend on either count (tested).
    """
    threads = torch.get_num_threads()
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@dataclass(frozen=True, kw_only=True)
class Threads(Job):
    """The job part of every stage: its share of the machine (``set_threads``)."""

    threads: int = setting(1, "torch and numba threads")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass(frozen=True, kw_only=True)
class Device(Threads):
    """The job part of the stages that run a model: the device it runs on."""

    device: str = setting("auto", "auto (CUDA if present), cpu, cuda")

    def start(self) -> torch.device:
        """Set the threads; the device the job runs on."""
        set_threads(self.threads)
        return resolve_device(self.device)


@dataclass(frozen=True, kw_only=True)
class Inference(Device):
    """The job part of the stages that evaluate: the forwards' precision (the config's
    ``predict.dtype``; weights stay as stored). Training stages compute in FP32."""

    dtype: str = setting(
        "float32",
        "inference precision of the forward passes (autocast)",
        config="predict.dtype",
        choices=tuple(sorted(DTYPES)),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
