"""The command-line flags shared by the parsers still written by hand: the ``mmlu`` stage and the
tools (``lpe.tools.apply``, ``lpe.tools.choose``); a typed job's flags are generated
(``lpe.cli.jobs``). With the entry points and ``lpe.cli.jobs``, the only place that knows about
``argparse``.
"""

from __future__ import annotations

import argparse

from lpe.core.runtime import DTYPES
from lpe.formats.names import low_precision_problem
from lpe.formats.number_formats import FORMATS

FORMAT_NAMES = f"{', '.join(FORMATS)} (and int2..int16)"  # what --format takes


def positive_int(value: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


# ---- how a stage runs: threads, device, inference precision
def add_runtime_arguments(parser: argparse.ArgumentParser, inference: bool = True) -> None:
    """``--threads``, ``--device`` and, for stages that only evaluate (``inference``),
    ``--dtype``: how a stage runs. Training stages compute in FP32 and do not offer ``--dtype``."""
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    if not inference:
        return
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=sorted(DTYPES),
        help="inference precision of the forward passes (autocast; weights stay as stored)",
    )


def format_name(value: str) -> str:
    """An argparse ``type``: a number format's name (lower-cased), or a one-line reason."""
    name = value.strip().lower()
    if problem := low_precision_problem(name):
        raise argparse.ArgumentTypeError(problem)
    return name
