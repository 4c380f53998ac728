"""A stage's job: one frozen dataclass whose fields are everything the stage takes.

A field is declared with :func:`setting`: its default (the one default; where a config key sets
it, the schema's, checked by tests/cli/test_jobs.py), its help, and the config key that sets it
(``config="quant.per_channel"``). The stage's command line is generated from the fields
(``lpe.cli.jobs.from_cli``: one flag per field, ``--settings`` fills the config-keyed ones), and
:func:`from_settings` builds the same job from a settings section without any command line, so
the stage's ``run(job)`` is a library function a test or a program calls directly.

A job checks itself when it is made (``__post_init__`` raises ``ValueError`` with one line that
names the problem): a bad value stops before the checkpoint is read, whichever way the job was
built. Jobs are keyword-only, so shared parts (the member format, the evaluation) are mixed in
as bases in any order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from lpe.core.settings import lookup


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    config: str | tuple[str, ...] | None = None,
    from_config: Callable[[Any], Any] | None = None,
    choices: tuple | None = None,
    parse: Callable[[str], Any] | None = None,
    optional_value: bool = False,
) -> Any:
    """A job field: ``default`` (none: the field is required), its ``help``, the ``config`` key
    that sets it (several: each read in turn, the last one wins, as a fast source's own
    ``fast.sse.momentum`` over the fine-tuning's ``bma.sgd.momentum``; ``from_config`` converts
    the key's value, as ``predict.split`` -> calibrate),
    the values it takes (``choices``), how its flag's text is read when its type does not say
    (``parse``), and whether its flag may be given without a value (``optional_value``: a rule's
    empty output list, read as None)."""
    meta = {
        "help": help,
        "config": config,
        "from_config": from_config,
        "choices": choices,
        "parse": parse,
        "optional_value": optional_value,
    }
    if isinstance(default, list | tuple):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class Job:
    """The base of every stage's job: mixed-in parts check themselves in ``__post_init__`` and
    call the next one (cooperatively, so any order of bases works)."""

    def __post_init__(self) -> None:
        pass


def config_keys(field: dataclasses.Field) -> tuple[str, ...]:
    """The config keys that set ``field``, in the order they are read (the last one wins)."""
    keys = field.metadata.get("config") or ()
    return (keys,) if isinstance(keys, str) else tuple(keys)


def configured(job_type: type[Job]) -> dict[str, list[dataclasses.Field]]:
    """The config keys ``job_type`` reads, each with the fields it sets, in reading order."""
    keys: dict[str, list[dataclasses.Field]] = {}
    for field in dataclasses.fields(job_type):
        for key in config_keys(field):
            keys.setdefault(key, []).append(field)
    return keys


def config_value(field: dataclasses.Field, value: Any) -> Any:
    """``field``'s value from its config key's ``value`` (converted, lists as tuples)."""
    convert = field.metadata.get("from_config") or (lambda v: v)
    value = convert(value)
    return tuple(value) if isinstance(value, list) else value


def job_of(job_type: type[Job], choice: Any) -> type[Job]:
    """``job_type``, or for a job whose fields depend on one of its values (its ``chosen_by``
    names it: ``fast_train``'s ``method``) the job of ``choice``, that value
    (``job_type.specialised``)."""
    return job_type.specialised(choice) if getattr(job_type, "chosen_by", None) else job_type


def from_settings(job_type: type[Job], section: Mapping[str, Any], **given: Any) -> Job:
    """The job of the config keys in ``section`` (nested as in the config) and the job's own
    values ``given`` (paths, seeds): what ``from_cli`` builds from ``--settings`` and flags.
    A key missing from ``section`` is a KeyError naming it and what is there."""
    job_type = job_of(job_type, given.get(getattr(job_type, "chosen_by", None) or ""))
    values = {}
    for key, fields in configured(job_type).items():
        value = lookup(section, key)
        for field in fields:
            values[field.name] = config_value(field, value)
    return make(job_type, {**values, **given})


def make(job_type: type[Job], values: Mapping[str, Any]) -> Job:
    """``job_type`` of ``values``, a list (a flag's or a config's) as a tuple."""
    return job_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def part(job: Job, part_type: type[Job]) -> Job:
    """The ``part_type`` part of ``job`` alone (a job made of ``TrainConfig`` and more gives its
    ``TrainConfig``): what a library function that takes the part, and records it, is given."""
    return part_type(**{f.name: getattr(job, f.name) for f in dataclasses.fields(part_type)})
