"""A stage's settings from the workflow's config: the config keys it reads, as JSON.

The workflow passes each stage the config keys it reads as one JSON argument (``--settings
'{"bma": {"epochs": 3, "sgd": {"lr": 0.001, ...}}, ...}'``, nested as in the config; ``job``
holds the job's own values, such as a resume file). It is a rule ``param``, so Snakemake reruns
a job when its settings change, and only then; no rule builds flags by hand.

The stage says, in its own module, which config key sets which of its options (``options``: key
path -> option, ``"bma.swag.rank": "swag_rank"``); tests/test_settings.py checks every key
against the config and every job's settings against what its stage reads, so a renamed key or
option fails a test instead of silently keeping a default. A value is converted by its option's
type, as the flag's text would be, so a setting gives the stage the value its flag gives.
Options given on the command line win over the settings: a stage still runs by hand with flags
alone. A key missing from the settings stops the stage before any work, naming the key and the
keys that are there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FLAG = "--settings"
HELP = "the config keys this stage reads, as JSON (what the workflow passes)"


@dataclass(frozen=True)
class Option:
    """An option set from a settings key through ``convert`` (``per_channel`` -> ``per_tensor``)."""

    dest: str
    convert: Callable[[Any], Any]


def pick(config: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The parts of ``config`` named by ``keys`` (``"bma.sgd"``, ``"quant.exclude"``), nested as
    in the config: what one job's stage reads, and nothing else, so that a change elsewhere in
    the config does not rerun the job."""
    chosen: dict[str, Any] = {}
    for key in keys:
        *parents, last = key.split(".")
        into = chosen
        for part in parents:
            into = into.setdefault(part, {})
        try:
            into[last] = lookup(config, key)
        except KeyError:
            raise KeyError(f"the config has no key {key!r}") from None
    return chosen


def settings_json(section: Mapping[str, Any] | None = None, **extra: Any) -> str:
    """What the workflow passes: ``section`` with ``extra`` keys, as canonical JSON."""
    return json.dumps({**(section or {}), **extra}, sort_keys=True, separators=(",", ":"))


def lookup(section: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` (``"swag.rank"``) of ``section``; a KeyError names what is there."""
    value: Any = section
    for depth, key in enumerate(path.split(".")):
        if not isinstance(value, Mapping) or key not in value:
            where = ".".join(path.split(".")[:depth]) or "the settings"
            have = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise KeyError(f"{FLAG}: no key {path!r} ({where} has {have})")
        value = value[key]
    return value


def _typed(action: argparse.Action, value: Any) -> Any:
    """``value`` as the option's flag text would give it (its ``type``, per item for lists)."""
    if value is None or action.type is None:
        return value
    if isinstance(value, list):
        return [action.type(v) for v in value]
    return action.type(value)


def _arguments(argv: Sequence[str] | None) -> list[str]:
    """``argv``, or the process's arguments when None (as argparse reads them)."""
    return sys.argv[1:] if argv is None else list(argv)


def subcommand(argv: Sequence[str] | None) -> str | None:
    """The first argument (a stage's subcommand, ``train``/``predict``), before parsing."""
    return next(iter(_arguments(argv)), None)


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
