"""Validation of the experiment config against the workflow's JSON schema.

Every problem is reported at once, each naming the key and the allowed values, before any job
runs. Missing keys get the schema's defaults (objects default to ``{}`` so nested defaults fill).
This module imports no torch, so the Snakefile parses quickly.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import jsonschema
import yaml

from lpe.formats.names import FP32, int_bits, int_name, low_precision_problem, unknown_problem
from lpe.models.clip_towers import ZEROSHOT_SUFFIX, pairing_problems


class ConfigError(ValueError):
    """The config does not match the schema; the message lists every problem."""


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def fill_defaults(config: dict, schema: dict) -> dict:
    """A copy of ``config`` with the schema's defaults filled in, recursively."""
    config = copy.deepcopy(config)
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if sub.get("type") == "object" and isinstance(config.get(key), dict):
            config[key] = fill_defaults(config[key], sub)
    return config


def _is_integer(checker, value) -> bool:
    """Strict: ``4.0`` is not an integer here (JSON Schema says it is). A float reaches a path
    token or a CLI flag as ``int4.0`` or ``--members 4.0`` and fails late, far from its key."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(checker, value) -> bool:
    """Finite numbers only: ``.nan`` and ``.inf`` pass every ``minimum`` check unnoticed."""
    return _is_integer(checker, value) or (isinstance(value, float) and math.isfinite(value))


# Draft 2020-12 with the two stricter types; everything else as the standard says.
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)


def _key(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _explain(error: jsonschema.ValidationError) -> str:
    key, schema, value = _key(error.absolute_path), error.schema, error.instance
    kind = error.validator
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        extra = sorted(set(value) - set(schema.get("properties", {})))
        where = f" in '{key}'" if error.absolute_path else ""
        return f"unknown key(s) {', '.join(map(repr, extra))}{where}; allowed keys: {allowed}"
    if kind == "enum":
        allowed = ", ".join(map(str, schema["enum"]))
        return f"'{key}' = {value!r} is not allowed; allowed values: {allowed}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        strict = "exclusiveMinimum" in schema
        bounds = (f"> {low}" if strict else f">= {low}") if high is None else f"{low}..{high}"
        return f"'{key}' = {value!r} is out of range; allowed: {schema.get('type')} {bounds}"
    if kind in ("minItems", "uniqueItems"):
        return f"'{key}' = {value!r}: {error.message}"
    if kind == "type" and isinstance(value, float) and not math.isfinite(value):
        return f"'{key}' = {value!r} is not a finite number"
    if kind == "type" and schema.get("type") == "integer" and isinstance(value, float):
        hint = f"; write {int(value)}, without the decimal point" if value.is_integer() else ""
        return f"'{key}' = {value!r} is not an integer{hint}"
    return f"'{key}': {error.message}"


# The precision keys that held INT-b widths, and the keys of format names that replace them
RENAMED = {
    "quant.bits": "quant.formats",
    "bma.bits": "bma.formats",
    "fast.bits": "fast.format",
    "large.bits": "large.format",
    "baselines.bits": "baselines.formats",
    "figure1.bits": "figure1.format",
}
# Every key that names number formats: normalised (lower case) and checked against the catalogue;
# the INT-b ones vary INT-b's width alone (Table 6's LPE-BSR precisions, Figure 1's grid)
INT_KEYS = ("baselines.formats", "figure1.format")
FORMAT_KEYS = ("quant.formats", "bma.formats", "fast.format", "large.format", *INT_KEYS)


def _renamed_problems(config: dict) -> list[str]:
    """An old INT-b key, named with its new key and the value it would hold there."""
    problems = []
    for old, new in RENAMED.items():
        section, key = old.split(".")
        if isinstance(config.get(section), dict) and key in config[section]:
            value = config[section][key]
            try:
                names = (
                    f"[{', '.join(int_name(b) for b in value)}]"
                    if isinstance(value, list)
                    else int_name(value)
                )
            except (TypeError, ValueError):
                names = "format names such as int4"
            problems.append(f"'{old}' is now '{new}' (format names): write {new}: {names}")
    return problems


def _normalise_formats(config: dict) -> list[str]:
    """Lower-case every format name of ``FORMAT_KEYS`` in place; the unknown ones' problems
    (a value of the wrong type is the schema's problem, already named)."""
    problems = []
    for path in FORMAT_KEYS:
        section, key = path.split(".")
        value = config.get(section, {}).get(key)
        listed = value if isinstance(value, list) else [value]
        if not all(isinstance(n, str) for n in listed):
            continue
        names = [n.strip().lower() for n in listed]
        config[section][key] = names if isinstance(value, list) else names[0]
        for name in names:
            if problem := low_precision_problem(name):
                problems.append(f"'{path}': {problem}")
            elif path in INT_KEYS:
                try:
                    int_bits(name)
                except ValueError as err:
                    problems.append(f"'{path}': {err}")
    return problems


def _problems_text(problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"invalid config ({len(problems)} problem(s)):\n{lines}"


def validate(config: dict, schema: dict, check_cross_fields: bool = True) -> dict:
    """Return ``config`` with defaults filled and format names normalised; raise
    :class:`ConfigError` naming every problem."""
    problems = _renamed_problems(config)
    old = {tuple(k.split(".")) for k in RENAMED}
    config = {
        s: ({k: v for k, v in sub.items() if (s, k) not in old} if isinstance(sub, dict) else sub)
        for s, sub in config.items()
    }
    filled = fill_defaults(config, schema)
    validator = Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(map(str, e.absolute_path)))
    problems += [_explain(e) for e in errors] + _normalise_formats(filled)
    if problems:
        raise ConfigError(_problems_text(problems))
    if check_cross_fields and (problems := cross_field_problems(filled)):
        raise ConfigError(_problems_text(problems))
    return filled


# The mini profile's registered models (lpe.models.factory.MODELS; a test keeps the two equal).
# Spelled out here so that validating a config, which Snakemake does at every start, does not
# import timm.
MINI_MODELS = ("vit_mini_t", "vit_mini_s", "vit_mini_b", "vit_mini_l")


def cross_field_problems(config: dict) -> list[str]:
    """Problems a per-key schema cannot see: settings that contradict each other."""
    if config["dataset"]["name"] == "imagenet":
        return _image_problems(config) + _finetuning_problems(config) + _format_problems(config)
    if config["large"]["models"] or config["llm"]["models"]:
        return ["'large.models' and 'llm.models' belong to the paper profile (dataset imagenet)"]
    problems = [
        f"'models': {m!r} is not a registered mini model ({', '.join(MINI_MODELS)}); timm "
        "names need dataset.name imagenet"
        for m in config["models"]
        if m not in MINI_MODELS
    ]
    return (
        problems
        + _format_problems(config)
        + _train_noise_problems(config)
        + _swag_rank_problems(config)
        + _finetuning_problems(config)
    )


def _format_problems(config: dict) -> list[str]:
    """The number systems experiment: its models are Table 1's, its formats are registered."""
    formats = config["formats"]
    problems = [
        f"'formats.models': {m!r} is not in 'models'"
        for m in formats["models"]
        if m not in config["models"]
    ]
    problems += [f"'formats.names': {p}" for n in formats["names"] if (p := unknown_problem(n))]
    if FP32 in formats["names"]:
        problems.append("'formats.names': fp32 is every model's reference row; list formats only")
    if formats["models"] and not formats["names"]:
        problems.append("'formats.models' is set but 'formats.names' is empty: list formats")
    return problems


def _train_noise_problems(config: dict) -> list[str]:
    """The mini profile's retraining (the paper profile downloads its models and ignores it)."""
    noise = config["train_noise"]
    if not noise["models"]:
        return []
    problems = [
        f"'train_noise.models' lists {m!r}, which is not in 'models'"
        for m in noise["models"]
        if m not in config["models"]
    ]
    if config["train"]["seed"] in noise["seeds"]:
        problems.append(
            f"'train_noise.seeds' {noise['seeds']} repeat 'train.seed' = "
            f"{config['train']['seed']}, the main run's"
        )
    return problems


def _image_problems(config: dict) -> list[str]:
    """The paper profile: pretrained timm checkpoints evaluated on an image folder."""
    problems = []
    if not config["dataset"]["path"]:
        problems.append(
            "'dataset.path' is empty: name the ImageNet folder (PATH/val/<class>/<image>), "
            "e.g. --config 'dataset={path: /data/imagenet}'"
        )
    towers = config["checkpoints"]["openclip"]
    for model in config["large"]["models"]:
        tower = model.removesuffix(ZEROSHOT_SUFFIX)
        if tower not in towers:
            problems.append(
                f"'large.models' {model!r} needs its OpenCLIP text tower: add "
                f"'checkpoints.openclip.{tower}' = [architecture, pretrained tag]"
            )
        problems += pairing_problems(f"'large.models' {model!r}", tower, towers.get(tower))
    if config["llm"]["models"] and not config["llm"]["mmlu"]:
        problems.append(
            "'llm.mmlu' is empty: name the local MMLU copy, e.g. --config 'llm={mmlu: /data/mmlu}'"
        )
    untagged = [m for m in config["models"] if "." not in m]
    if untagged:
        problems.append(
            f"'models' {untagged} have no pretrained tag: use timm names such as "
            "vit_base_patch16_224.augreg_in21k_ft_in1k"
        )
    return problems


def _swag_rank_problems(config: dict) -> list[str]:
    """The mini profile knows its training set size, so SWAG's snapshot count (an image folder's
    is checked by lpe.stages.finetune before training)."""
    bma = config["bma"]
    problems = []
    if bma["swag"]["start_epoch"] < bma["epochs"]:
        steps = -(-config["dataset"]["train"] // bma["batch_size"])  # steps per epoch
        snapshots = (bma["epochs"] - bma["swag"]["start_epoch"]) * steps
        snapshots //= bma["swag"]["collect_every"]
        if bma["swag"]["rank"] > snapshots:
            problems.append(
                f"'bma.swag.rank' = {bma['swag']['rank']} is larger than the {snapshots} "
                "snapshots the schedule collects; lower it or collect more often "
                "('bma.swag.collect_every') or for longer"
            )
    return problems


def _finetuning_problems(config: dict) -> list[str]:
    """Fine-tuning, baselines and fast ensembles (both profiles)."""
    problems = []
    # models the profile does not list may keep their entries (a config that extends the mini
    # profile with fewer models); a name that is no model at all is a typo
    unknown = sorted(set(config["train"]["per_model"]) - {*config["models"], *MINI_MODELS})
    if unknown:
        problems.append(f"'train.per_model' names {unknown}, which are not models")
    bma = config["bma"]
    if bma["model"] not in config["models"]:
        problems.append(f"'bma.model' = {bma['model']!r} is not in 'models': add it there")
    if bma["swag"]["start_epoch"] >= bma["epochs"]:
        problems.append(
            f"'bma.swag.start_epoch' = {bma['swag']['start_epoch']} leaves no epoch to collect "
            f"snapshots in; it must be < 'bma.epochs' = {bma['epochs']}"
        )
    base = config["baselines"]
    large = base["model"] in config["large"]["models"]
    if base["model"] not in config["models"] and not large:
        problems.append(
            f"'baselines.model' = {base['model']!r} is in neither 'models' nor 'large.models'"
        )
    for key in ("gaussian_scales", "dropout_rates"):
        if not base[key]:
            problems.append(f"'baselines.{key}' is empty: the search has no candidates")
    fast = config["fast"]
    too_big = [m for m in fast["table5_sizes"] if m > bma["ensemble_size"]]
    if too_big:
        problems.append(
            f"'fast.table5_sizes' {too_big} exceed 'bma.ensemble_size' = {bma['ensemble_size']}, "
            "the LPE-BSR members made around the SGD solution"
        )
    if fast["format"] not in bma["formats"]:
        problems.append(
            f"'fast.format' = {fast['format']} has no LPE-BSR ensembles around the SGD solution "
            "(Table 5): add it to 'bma.formats'"
        )
    return problems + _seed_problems(config)


def _seed_problems(config: dict) -> list[str]:
    """Seeds one stage reads from another's runs: each must be among the runs made."""
    bma, fast, seed = config["bma"], config["fast"], config["landscape"]["seed"]
    problems = []
    if seed not in bma["seeds"]:
        problems.append(
            f"'landscape.seed' = {seed} is not in 'bma.seeds' {bma['seeds']}: Figures 3 and 6 "
            "draw that seed's LPE-BSR member of the fine-tuned model"
        )
    if seed not in fast["seeds"]:
        problems.append(
            f"'landscape.seed' = {seed} is not in 'fast.seeds' {fast['seeds']}: Figure 4 draws "
            "that seed's LPE-BSR copy of an SSE snapshot"
        )
    outside = [s for s in fast["seeds"] if s not in bma["seeds"]]
    if outside:
        problems.append(
            f"'fast.seeds' {outside} are not in 'bma.seeds' {bma['seeds']}: Table 5 and claim 5 "
            "read the LPE-BSR ensembles of the SGD solution made for those seeds"
        )
    return problems


ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
BASE_CONFIG = ROOT / "config/mini.yaml"  # the Snakefile's configfile, under every --configfile


def load_config_file(path: str | Path) -> dict:
    """A config file's mapping; a YAML error or a non-mapping names the file (and the line)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file must be a mapping of keys (profile:, dataset:, ...), "
            f"not a {type(data).__name__}"
        )
    return data


def main(argv: list[str] | None = None) -> None:
    """``python -m lpe.tools.config FILE...``: check config files as the workflow would read them.

    Snakemake reads ``--configfile`` files itself before the workflow starts, and its message for
    a broken one does not say which file; this names the file, the line and every bad key.
    """
    import argparse
    import sys

    from snakemake.utils import update_config  # how Snakemake merges --configfile files

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="config files, merged in order over mini.yaml")
    args = parser.parse_args(argv)
    try:
        config = load_config_file(BASE_CONFIG)
        for path in args.files:
            update_config(config, load_config_file(path))
    except ConfigError as err:
        sys.exit(f"error: {err}")
    try:
        validate(config, load_schema(SCHEMA))
    except ConfigError as err:
        sys.exit(f"error: {', '.join(args.files)}: {err}")
    print(f"config OK: {', '.join(args.files)} (over {BASE_CONFIG.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
