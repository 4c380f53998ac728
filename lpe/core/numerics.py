"""Pinned CPU numerics: the same numbers from every stage on every x86-64 machine.

torch, MKL and oneDNN each pick a vector code path by CPU (AVX2, AVX-512, AMX...), and each
path sums in its own order: one epoch of training differs by up to 1e-3 in the weights between
two paths, and a few epochs turn that into different checkpoints and flipped verdicts. Fixing the
thread count (``lpe.core.runtime.set_threads``) is not enough. So every stage pins the three code
paths before torch computes anything, to paths that every x86-64 CPU with AVX2, Intel or AMD,
runs the same way:

- ``ATEN_CPU_CAPABILITY=avx2``: torch's own vectorised kernels (element-wise, reductions, softmax);
- ``MKL_CBWR=AVX2,STRICT``: MKL's conditional numerical reproducibility for the matrix products.
  On Intel CPUs this is Intel's documented AVX2 branch, the same on every Intel CPU with AVX2. On
  AMD CPUs MKL takes its AUTO branch instead, measured identical across AMD EPYC Zen 3, Zen 4 and
  Zen 5 (``results/numerics_fingerprint.txt``; docs/reproducibility.md). ``STRICT`` so that a
  BLAS call does not depend on the thread count either. It runs at native speed
  (``benchmarks/results/numerics_cost.md``). ``COMPATIBLE`` (the pin before this one) gives the
  same GEMM bits on Intel and AMD, but training steps still differed there, at 1.5x the DAG's
  time, so it bought no exact regeneration across vendors;
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (torch's CPU convolutions, e.g. the patch embedding).

A pin is proven by equal hashes on two machines, not by one: ``python -m lpe.tools.fingerprint``
hashes the computations that decide the suite's numbers and ``--check`` compares them with the
reference machine's (``results/numerics_fingerprint.txt``).

These are read once, when each library first computes (not when torch is imported), so they are set
in ``os.environ`` by each program's entry point before it computes: the stage and report packages
(``lpe/stages/__init__.py``, ``lpe/reports/__init__.py``) and the tools' ``main``. Importing ``lpe``
or any library module sets nothing: a program of the user's keeps its own numerics and speed. A
library user who wants the suite's numbers calls :func:`pin_cpu_numerics` first thing, before the
program's first torch computation (docs/apply.md says what it costs). Inside an entry point, a
value the caller had set is overridden: a stage run by hand gives the workflow's numbers whatever
the shell asked for.

Opting out: ``LPE_NATIVE_NUMERICS=1`` leaves the three variables as they are, for native speed;
the numbers then depend on the CPU. Outside the promise: ARM CPUs, CUDA, and other versions of
torch/MKL (the lock file pins those; ``python -m lpe.tools.compare --noise`` judges other setups).
"""

from __future__ import annotations

import os
import sys

OPT_OUT = "LPE_NATIVE_NUMERICS"
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def native_requested() -> bool:
    """Whether the user opted out of the pinning (``LPE_NATIVE_NUMERICS`` set, not ``0``)."""
    return os.environ.get(OPT_OUT, "0") not in ("", "0")


def pin_cpu_numerics() -> None:
    """Pin torch's, MKL's and oneDNN's CPU code paths (:data:`PINNED`) for this process and its
    children, unless opted out.

    Call it before the process's first torch computation (importing torch is fine): the libraries
    read these variables when they first compute. Only x86-64 has these paths; elsewhere (ARM)
    nothing is set and nothing is promised.
    """
    if native_requested() or not _is_x86_64():
        return
    os.environ.update(PINNED)


def describe() -> str:
    """One line for a log: which CPU path this process computes on."""
    if native_requested():
        return f"CPU numerics: native ({OPT_OUT} set); numbers depend on this CPU"
    if not _is_x86_64():
        return "CPU numerics: not pinned (not x86-64); numbers depend on this CPU"
    torch = sys.modules.get("torch")
    active = torch.backends.cpu.get_cpu_capability() if torch is not None else "?"
    if any(os.environ.get(k) != v for k, v in PINNED.items()):  # a library user's own process
        return (
            f"CPU numerics: this process's own ({settings()}; torch kernels: {active}); "
            "lpe.core.numerics.pin_cpu_numerics() gives the suite's"
        )
    return f"CPU numerics: pinned ({settings()}; torch kernels: {active}; opt out: {OPT_OUT}=1)"


def settings() -> str:
    """The numerics variables as this process has them, e.g. ``ATEN_CPU_CAPABILITY=avx2 ...``."""
    return " ".join(f"{k}={os.environ.get(k, '')}" for k in (*PINNED, OPT_OUT))


def _is_x86_64() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")
