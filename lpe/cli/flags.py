"""The command-line flags shared by the stages, reports and tools whose parsers are written by
hand (a typed job's flags are generated: ``lpe.cli.jobs``); with the entry points and
``lpe.cli.jobs``, the only place that knows about ``argparse``.

The library below takes values and dataclasses; each helper here turns a stage's flags into them
(``member_format``: a number format and rounding policy; ``open_stage_data``: the examples of
``--data``). Each ``*_SETTINGS`` maps config keys to the options they set (lpe.core.settings,
``lpe.cli.jobs.apply_settings``, tests/cli/test_settings.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lpe.core.runtime import DTYPES
from lpe.core.settings import Option
from lpe.data.inputs import DEFAULT_HOLDOUT, open_data
from lpe.evaluation.prediction import (
    CALIBRATE_HELP,
    evaluates_test,
)
from lpe.formats.names import MAX_BITS, MIN_BITS
from lpe.formats.number_formats import FORMATS, NumberFormat, get_format
from lpe.formats.policy import DEFAULT_EXCLUDE, QuantPolicy
from lpe.methods import load_all
from lpe.training.finetuning import FINETUNING, RUN_FIELDS, settings_fields, settings_keys
from lpe.training.sources import Setting

# The flags offer the registered methods (--optimizer, their settings) and the stages load their
# posteriors: importing the flags registers the suite's methods.
load_all()


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


# ---- the data a stage reads
# An image folder's holdout from the config's dataset section (lpe.core.settings)
DATA_SETTINGS = {"dataset.holdout": "holdout"}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and, for an image folder, its holdout size and image-loading processes."""
    parser.add_argument("--data", required=True, help="a data file (mini) or an image folder")
    parser.add_argument(
        "--holdout",
        type=int,
        default=DEFAULT_HOLDOUT,
        help="image folder: training images held out for validation",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="image folder: processes decoding images (0: in the main one)",
    )


def open_stage_data(args: argparse.Namespace, info):
    """The examples of ``--data`` for the checkpoint ``info`` (see add_data_arguments)."""
    return open_data(args.data, info.model, info.num_classes, args.holdout, args.workers,
                     input_shape=info.input_shape)  # fmt: skip


# ---- the number format and rounding policy of the members a stage makes
# The rounding policy from the config's quant section (lpe.core.settings): config key -> option
QUANT_SETTINGS = {
    "quant.per_channel": "per_channel",
    "quant.exclude": "exclude",
    "quant.min_ndim": "min_ndim",
}


def add_bits_argument(parser, help: str) -> None:
    """``--bits b``: INT-b, for b in MIN_BITS..MAX_BITS (``parser`` may be a group)."""
    parser.add_argument("--bits", type=int, choices=range(MIN_BITS, MAX_BITS + 1),
                        metavar=f"{{{MIN_BITS}..{MAX_BITS}}}", help=help)  # fmt: skip


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The rounding policy's flags (``QUANT_SETTINGS`` sets them from the config)."""
    parser.add_argument(
        "--per-channel", action=argparse.BooleanOptionalAction, default=True,
        help="one scale per output channel (--no-per-channel: one per tensor)",
    )  # fmt: skip
    parser.add_argument(
        "--exclude", nargs="*", default=list(DEFAULT_EXCLUDE), help="name patterns kept in FP32"
    )
    parser.add_argument("--min-ndim", type=int, default=2)


def member_format(args: argparse.Namespace) -> tuple[NumberFormat, QuantPolicy]:
    """The number format and rounding policy of a stage's ``--format`` and
    ``add_policy_arguments``' flags (a typed job's are ``lpe.members.sets.MemberFormat``'s)."""
    fmt = get_format(args.format, per_channel=args.per_channel)
    return fmt, QuantPolicy(exclude=tuple(args.exclude), min_ndim=args.min_ndim)


# ---- temperature scaling's calibration split
# The predict stages' settings (lpe.core.settings): config key -> option. The split evaluated and
# the inference precision; and, for the stages behind Tables 1, 5 and 6, the same split as the
# temperature-scaling control: evaluating the test split also predicts the selection split (an
# image folder's holdout), where the temperatures are fit. The selection split cannot calibrate
# itself.
PREDICT_SETTINGS = {"predict.split": "split", "predict.dtype": "dtype"}


CALIBRATED_SETTINGS = {
    **PREDICT_SETTINGS,
    "predict.split": ("split", Option("calibrate", evaluates_test)),
    "dataset.holdout": "holdout",
}


def add_calibration_arguments(parser) -> None:
    """``--calibrate`` (the stage's data flags hold ``--holdout``)."""
    parser.add_argument("--calibrate", action="store_true", help=CALIBRATE_HELP)


def check_calibration(parser, args) -> None:
    """The selection split cannot calibrate itself: ``--calibrate`` evaluates the test split."""
    if args.calibrate and args.split != "test":
        parser.error("--calibrate fits on the selection split: evaluate the test split (--split)")


# ---- a fine-tuning run and its resumable state
# FinetuneConfig from the config's bma section (lpe.core.settings): config key -> field, as each
# registered method's settings fields name their keys. The optimizer is the job's (a wildcard).
FINETUNE_SETTINGS = settings_keys()


# Resumable state: every bma.checkpoint_every steps, to the job's own file (the workflow's
# job.resume: none when checkpoint_every is 0)
RESUME_SETTINGS = {"bma.checkpoint_every": "checkpoint_every", "job.resume": "resume"}


def add_finetune_arguments(parser: argparse.ArgumentParser, optimizer: bool = True) -> None:
    """``--optimizer`` (unless the stage decides it), ``--epochs``, ``--batch-size``, ``--seed``
    and one flag per settings field of the methods (``--lr``, ``--swag-rank``, ...), each
    defaulting to its default."""
    if optimizer:
        parser.add_argument("--optimizer", default="sgd", choices=tuple(FINETUNING))
    for name, default in {**RUN_FIELDS, **settings_fields()}.items():
        if name != "optimizer":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume PATH`` and ``--checkpoint-every N``: resumable training (``lpe.core.resume``)."""
    parser.add_argument("--resume", help="file (or, for several runs, folder) of resumable state")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="save the resumable state every N steps (0: never)")  # fmt: skip


# ---- a trainer's own options (a fast source's module, lpe.methods: OPTIONS)
def add_setting_arguments(parser: argparse.ArgumentParser, options: Sequence[Setting]) -> None:
    """One flag per option (``lr_candidates`` -> ``--lr-candidates``), typed and defaulted as it
    says; an option of many values takes any number of them."""
    for option in options:
        many = {"nargs": "*", "default": list(option.default)} if option.many else {}
        parser.add_argument(f"--{option.name.replace('_', '-')}", type=option.type,
                            **{"default": option.default, **many}, help=option.help)  # fmt: skip
