"""A stage's command line, and how its ``--settings`` JSON sets it: the flags of a typed job
(``lpe.core.jobs``), generated from its fields, and ``apply_settings`` for a parser written by
hand (the claims report's).

``from_cli(Job, argv)`` offers one flag per field (``batch_size`` -> ``--batch-size``), typed by
the field's annotation (``tuple[int, ...]``: any number of values; ``bool``: ``--x``/``--no-x``),
defaulted by the field's default and, under ``--settings``, by the config keys the fields name;
a flag on the command line wins. It imports no method, model or torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from lpe.core.jobs import Job, configured, job_of, make
from lpe.core.settings import FLAG, Option, lookup

# ---- --settings: config keys as the defaults of a stage's options
HELP = "the config keys this stage reads, as JSON (what the workflow passes)"


def _typed(action: argparse.Action, value: Any) -> Any:
    """``value`` as the option's flag text would give it (its ``type``, per item for lists)."""
    if value is None or action.type is None:
        return value
    if isinstance(value, list | tuple):
        return [action.type(v) for v in value]
    return action.type(value)


def _arguments(argv: Sequence[str] | None) -> list[str]:
    """``argv``, or the process's arguments when None (as argparse reads them)."""
    return sys.argv[1:] if argv is None else list(argv)


def argument_value(argv: Sequence[str] | None, flag: str) -> str | None:
    """The text after ``flag`` in ``argv`` (the process's arguments when None), before parsing:
    what a stage needs to know which options its settings set (``--method``)."""
    argv = _arguments(argv)
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


Options = Mapping[str, "str | Option | tuple[str | Option, ...]"]


def apply_settings(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, options: Options
) -> None:
    """Add ``--settings`` to ``parser``; when ``argv`` has it, its values become the defaults of
    ``options`` (and a required option is no longer required). Stops the stage on bad settings.
    """
    parser.add_argument(FLAG, help=HELP)
    text = argument_value(argv, FLAG)
    if text is None:
        return
    try:
        section = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"{FLAG} is not JSON ({err})")
    if not isinstance(section, dict):
        parser.error(f"{FLAG} must be a JSON object, got {type(section).__name__}")
    actions = {action.dest: action for action in parser._actions}
    for path, targets in options.items():
        try:
            value = lookup(section, path)
        except KeyError as err:
            parser.error(err.args[0])
        for option in targets if isinstance(targets, tuple) else (targets,):
            if isinstance(option, str):
                option = Option(option, lambda v: v)
            dest, convert = option.dest, option.convert
            if dest not in actions:
                raise ValueError(f"settings key {path!r} names no option {dest!r} of this stage")
            actions[dest].default = _typed(actions[dest], convert(value))
            actions[dest].required = False


# ---- a typed job's flags
def _flag_type(hint: Any) -> tuple[Any, bool]:
    """``(type of one value, many)`` of a field's annotation: ``tuple[int, ...]`` -> (int, True),
    ``str | None`` -> (str, False)."""
    many = typing.get_origin(hint) is tuple
    if many:
        hint = typing.get_args(hint)[0]
    if isinstance(hint, types.UnionType):
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    return hint, many


def job_parser(job_type: type[Job], description: str | None = None) -> argparse.ArgumentParser:
    """A parser with one flag per field of ``job_type`` (see the module's docstring)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    hints, own = typing.get_type_hints(job_type), job_type.__dict__.get("__annotations__", {})
    # the job's own fields first, then its shared parts' (threads, data, format ...)
    for field in sorted(dataclasses.fields(job_type), key=lambda f: f.name not in own):
        meta, flag = field.metadata, f"--{field.name.replace('_', '-')}"
        kind, many = _flag_type(hints[field.name])
        options: dict[str, Any] = {"help": meta.get("help") or None, "dest": field.name}
        if field.default is dataclasses.MISSING:
            options.update(required=True, default=argparse.SUPPRESS)  # no "(default: None)"
        else:
            options["default"] = list(field.default) if many else field.default
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = meta.get("parse") or kind
            if meta.get("choices"):
                options["choices"] = meta["choices"]
            if many:
                options["nargs"] = "*"
            elif meta.get("optional_value"):
                options["nargs"] = "?"
        parser.add_argument(flag, **options)
    return parser


def settings_options(job_type: type[Job]) -> dict[str, tuple[Option, ...]]:
    """The config keys of ``job_type``'s fields, as ``apply_settings`` takes them."""
    identity = lambda value: value  # noqa: E731
    return {
        key: tuple(Option(f.name, f.metadata.get("from_config") or identity) for f in fields)
        for key, fields in configured(job_type).items()
    }


def from_cli(
    job_type: type[Job], argv: Sequence[str] | None = None, description: str | None = None
) -> Job:
    """The job of ``argv`` (the process's arguments when None): its flags and ``--settings``.
    A bad value stops here, with the job's own one-line reason. A stage of subcommands (its
    ``commands``: name -> job) takes the subcommand first (``mmlu predict --model ...``)."""
    if commands := getattr(job_type, "commands", None):
        argv = _arguments(argv)
        if not argv or argv[0] not in commands:
            parser = argparse.ArgumentParser(description=description)
            parser.add_argument("command", choices=tuple(commands))
            parser.parse_args(argv[:1])  # stops with argparse's usage and its one line
        job_type, description, argv = (
            commands[argv[0]],
            job_type.commands[argv[0]].__doc__,
            argv[1:],
        )
    by = getattr(job_type, "chosen_by", None) or ""  # a job whose fields depend on one flag
    job_type = job_of(job_type, argument_value(argv, f"--{by.replace('_', '-')}"))
    parser = job_parser(job_type, description)
    if options := settings_options(job_type):  # a job that reads no config key has no --settings
        apply_settings(parser, argv, options)
    values = vars(parser.parse_args(argv))
    values.pop(FLAG.lstrip("-"), None)
    try:
        return make(job_type, values)
    except ValueError as err:
        parser.error(str(err))
