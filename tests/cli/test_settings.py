"""Stages read their own config section (lpe.core.settings): the workflow passes the sections as
JSON, and each stage maps config keys onto its options in its own module."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import re
import shlex
import subprocess

import pytest
from helpers import schema_default

from lpe.cli.jobs import apply_settings
from lpe.core.settings import FLAG, Option, lookup, pick, settings_json
from lpe.methods import family, load_all, spec
from lpe.reports.claims import CLAIMS_SETTINGS
from lpe.tools.config import ROOT, load_config_file, load_schema, validate
from lpe.training.finetuning import settings_keys

load_all()  # every fine-tuning method's settings (settings_keys)

# the maps of config keys to options outside the typed jobs (whose keys tests/cli/test_jobs.py
# checks): the claims report's, each fast source's own, the fine-tuning methods' settings
MAPS = {
    "claims": CLAIMS_SETTINGS,
    "finetune": settings_keys(),
    **{f"fast {s.name}": spec(s.name).fast.settings for s in family("fast")},
}


def sample_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--rates", type=float, nargs="*", default=[])
    parser.add_argument("--per-tensor", action="store_true")
    return parser


OPTIONS = {
    "bma.epochs": "epochs",
    "bma.sgd.lr": "lr",
    "fast.sse.lr": "rates",
    "quant.per_channel": Option("per_tensor", lambda per_channel: not per_channel),
}
SECTION = {
    "bma": {"epochs": 3, "sgd": {"lr": 0.003}},
    "fast": {"sse": {"lr": [1, 0.5]}},
    "quant": {"per_channel": False},
}


def parse(argv: list[str], options=OPTIONS) -> argparse.Namespace:
    parser = sample_parser()
    apply_settings(parser, argv, options)
    return parser.parse_args(argv)


def test_settings_set_each_option_as_its_flag_would():
    args = parse(["--settings", settings_json(SECTION)])
    assert (args.epochs, args.lr, args.per_tensor) == (3, 0.003, True)
    # typed as the flag's text is: the integers of a float list are floats, as "--rates 1 0.5"
    assert args.rates == [1.0, 0.5] and all(type(r) is float for r in args.rates)
    flags = parse(["--epochs", "3", "--lr", "0.003", "--rates", "1", "0.5", "--per-tensor"])
    assert vars(args) | {"settings": None} == vars(flags)


def test_a_flag_on_the_command_line_wins_over_the_settings():
    args = parse(["--settings", settings_json(SECTION), "--lr", "0.5", "--epochs=7"])
    assert (args.lr, args.epochs) == (0.5, 7)


def test_without_settings_a_required_option_is_still_required(capsys):
    with pytest.raises(SystemExit):
        parse([])
    assert "--epochs" in capsys.readouterr().err


def test_a_missing_key_stops_the_stage_naming_it_and_what_is_there(capsys):
    section = {"bma": {"epochs": 3, "sgd": {"momentum": 0.9}}, "fast": {}, "quant": {}}
    with pytest.raises(SystemExit):
        parse(["--settings", json.dumps(section)])
    err = capsys.readouterr().err
    assert "'bma.sgd.lr'" in err and "bma.sgd has ['momentum']" in err


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_settings_that_are_not_a_json_object_are_refused(text, capsys):
    with pytest.raises(SystemExit):
        parse(["--settings", text])
    assert "--settings" in capsys.readouterr().err


def test_a_key_that_names_no_option_is_a_bug_found_at_once():
    with pytest.raises(ValueError, match="'bma.epochs' names no option 'epoch'"):
        parse(["--settings", settings_json(SECTION)], {"bma.epochs": "epoch"})


@pytest.mark.parametrize("profile", ["mini", "paper"])
@pytest.mark.parametrize("name", sorted(MAPS))
def test_every_key_a_stage_reads_is_a_key_of_the_config(name, profile):
    """Keys outside job.* (the workflow's per-job values) exist in every validated config, so a
    renamed config key fails here, not as a silently kept default."""
    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    config = validate(load_config_file(ROOT / f"config/{profile}.yaml"), schema)
    for path in MAPS[name]:
        if not path.startswith("job."):
            lookup(config, path)


def dry_run_commands(configfile: str) -> list[str]:
    """Every stage command of a whole DAG (``snakemake -n -p --forceall``) of ``configfile``."""
    run = subprocess.run(
        ["snakemake", "-n", "-p", "--forceall", "--cores", "1", "--configfile", configfile],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = (line.split("python -m ", 1)[-1] for line in run.stdout.splitlines())
    return sorted({f"python -m {line.split(' > ')[0]}" for line in lines
                   if line.startswith("lpe.") and FLAG in line})  # fmt: skip


def leaves(node: dict, prefix: str = "") -> list[str]:
    """Every key path of a nested settings object down to its values."""
    paths = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        paths += leaves(value, f"{path}.") if isinstance(value, dict) and value else [path]
    return paths


def without(node: dict, path: str) -> dict:
    """``node`` with the key at ``path`` removed."""
    head, _, rest = path.partition(".")
    if not rest:
        return {k: v for k, v in node.items() if k != head}
    return {**node, head: without(node[head], rest)}


def stage_accepts(module: str, argv: list[str]) -> bool:
    """Whether the stage takes ``argv`` up to --help (its settings included)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            importlib.import_module(module).main([*argv, "--help"])
        except SystemExit as stop:
            return stop.code == 0
    return True


@pytest.mark.parametrize("configfile", ["config/mini.yaml", "config/paper.yaml"])
def test_each_job_passes_exactly_the_keys_its_stage_reads(configfile):
    """Every job's --settings holds every config key its stage reads (the stage starts), and
    only those: without any one of them the stage stops, so no key is passed that the stage
    ignores (a change to it would rerun the job for nothing)."""
    checked = 0
    for command in dry_run_commands(configfile):
        tokens = shlex.split(command)
        module, argv = tokens[2], tokens[3:]
        at = argv.index(FLAG) + 1
        settings = json.loads(argv[at])
        assert stage_accepts(module, argv), f"{module} refuses its settings: {command}"
        for path in leaves(settings):
            if path.split(".")[0] == "job":  # the job's own values, not config keys
                continue
            argv[at] = json.dumps(without(settings, path))
            assert not stage_accepts(module, argv), f"{module} does not read {path}: {command}"
            checked += 1
        argv[at] = json.dumps(settings)
    assert checked > 50


def test_pick_keeps_the_named_parts_nested_as_in_the_config():
    config = {"bma": {"epochs": 3, "sgd": {"lr": 0.1, "momentum": 0.9}, "seeds": [0]}}
    assert pick(config, ["bma.sgd", "bma.epochs"]) == {"bma": {"sgd": config["bma"]["sgd"],
                                                              "epochs": 3}}  # fmt: skip
    with pytest.raises(KeyError, match="bma.swag"):
        pick(config, ["bma.swag.rank"])


def outside_shell(text: str) -> list[str]:
    """The code lines of a rule file outside its ``shell:`` sections (comments left out)."""
    kept, shell_indent = [], None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if shell_indent is not None and (not line.strip() or indent > shell_indent):
            continue
        shell_indent = indent if line.strip() == "shell:" else None
        if line.strip() and not line.lstrip().startswith("#"):
            kept.append(line)
    return kept


FLAG_TEXT = re.compile(r"[\"']--[a-z]")  # the start of a string that begins with a flag


def test_no_rule_file_builds_flags_by_hand():
    """Options reach a stage through --settings or a flag written in a rule's shell, never as a
    flag string built in Python (as finetune_flags, QUANT_FLAGS and claims_flags were)."""
    built = [
        f"{path.name}: {line.strip()}"
        for path in sorted((ROOT / "workflow/rules").glob("*.smk"))
        for line in outside_shell(path.read_text())
        if FLAG_TEXT.search(line)
    ]
    assert not built, built
    sample = 'def flags():\n    return f"--lr {LR}"\n\n\nrule x:\n    shell:\n        "a --b"\n'
    assert outside_shell(sample) == [
        "def flags():",
        '    return f"--lr {LR}"',
        "rule x:",
        "    shell:",
    ]
    assert [line for line in outside_shell(sample) if FLAG_TEXT.search(line)]  # seen
    assert len((ROOT / "workflow/rules/common.smk").read_text().splitlines()) <= 200


# flags one key of several methods sets, whose one default cannot be each key's: the fast stage's
# --momentum (fast.<source>.momentum; csgld's key defaults to 0) and --lr-candidates (empty: no
# search, the run takes --lr)
SHARED_FLAGS = {"fast.csgld.momentum", "fast.sse.lr", "fast.csgld.lr"}


def test_a_flag_defaults_to_its_config_keys_schema_default():
    """One default per key, the schema's: a stage run by hand without a flag runs as the workflow
    does with the key left out of the config."""
    from lpe.training.finetuning import RUN_FIELDS, settings_fields

    defaults = {**RUN_FIELDS, **settings_fields()}
    wrong = {}
    for key, dest in settings_keys().items():
        if defaults[dest] != schema_default(key):
            wrong[key] = (defaults[dest], schema_default(key))
    for source in family("fast"):
        trainer = spec(source.name).fast
        own = {option.name: option.default for option in trainer.options}
        for key, dest in trainer.settings.items():
            if key.startswith("job.") or key in SHARED_FLAGS:
                continue
            flag_default = own.get(dest, defaults.get(dest))
            if flag_default != schema_default(key):
                wrong[key] = (flag_default, schema_default(key))
    assert wrong == {}
