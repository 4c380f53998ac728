"""A stage's settings from the workflow's config: the config keys it reads, as JSON.

The workflow passes each stage the config keys it reads as one JSON argument (``--settings
'{"bma": {"epochs": 3, "sgd": {"lr": 0.001, ...}}, ...}'``, nested as in the config; ``job``
holds the job's own values, such as a resume file). It is a rule ``param``, so Snakemake reruns
a job when its settings change, and only then; no rule builds flags by hand.

The stage says, in its own module, which config key sets which of its options (``options``: key
path -> option, ``"bma.swag.rank": "swag_rank"``); tests/cli/test_settings.py checks every key
against the config and every job's settings against what its stage reads, so a renamed key or
option fails a test instead of silently keeping a default. A value is converted by its option's
type, as the flag's text would be, so a setting gives the stage the value its flag gives.
Options given on the command line win over the settings: a stage still runs by hand with flags
alone. A key missing from the settings stops the stage before any work, naming the key and the
keys that are there. This module has no command line: the settings become a parser's defaults
in ``lpe.cli.jobs.apply_settings`` (or ``lpe.cli.jobs.from_cli`` for a typed job).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FLAG = "--settings"


@dataclass(frozen=True)
class Option:
    """An option set from a settings key through ``convert`` (``predict.split``: ``calibrate``)."""

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
