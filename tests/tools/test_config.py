from pathlib import Path

import pytest
import yaml

from lpe.data.datasets import DATASETS
from lpe.models.factory import MODELS
from lpe.tools.config import (
    MINI_MODELS,
    ConfigError,
    cross_field_problems,
    fill_defaults,
    load_schema,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")


def mini():
    return yaml.safe_load((ROOT / "config/mini.yaml").read_text())


def test_mini_config_is_valid_and_explicit():
    config = mini()
    assert validate(config, SCHEMA) == config  # every key written out, no default needed


def test_defaults_fill_an_empty_config():
    filled = validate({}, SCHEMA)
    assert filled["quant"]["formats"] == ["int6", "int4"]
    assert filled["lpe"]["ensemble_size"] == 10
    assert filled["dataset"]["test"] >= 5000


def test_every_key_has_a_description_and_default():
    def walk(schema, path):
        for key, sub in schema.get("properties", {}).items():
            assert "description" in sub, f"{path}{key} has no description"
            assert "default" in sub, f"{path}{key} has no default"
            walk(sub, f"{path}{key}.")

    walk(SCHEMA, "")


def test_schema_enums_match_the_registries():
    assert set(MINI_MODELS) == set(MODELS)
    names = set(SCHEMA["properties"]["dataset"]["properties"]["name"]["enum"])
    assert names == set(DATASETS) | {"imagenet"}


def test_a_mini_profile_model_must_be_registered_and_an_imagenet_one_a_timm_name():
    config = validate({"models": ["vit_mini_x"]}, SCHEMA, check_cross_fields=False)
    assert any("'vit_mini_x' is not a registered" in p for p in cross_field_problems(config))
    vit = "vit_base_patch16_224.augreg_in21k_ft_in1k"
    paper = validate({"dataset": {"name": "imagenet", "path": "/data/in1k"}, "models": [vit],
                      "quant": {"formats": ["int6"]}, "bma": {"model": vit},
                      "baselines": {"model": vit, "formats": ["int6"]}},
                     SCHEMA, check_cross_fields=False)  # fmt: skip
    assert cross_field_problems(paper) == []
    paper["bma"]["model"] = "vit_mini_s"  # fine-tuning and baselines need a listed model
    paper["baselines"]["model"] = "vit_large_patch14_clip_quickgelu_224.openai+zeroshot"
    problems = cross_field_problems(paper)
    assert any("'bma.model' = 'vit_mini_s' is not in 'models'" in p for p in problems)
    assert any("is in neither 'models' nor 'large.models'" in p for p in problems)
    paper["large"]["models"] = [paper["baselines"]["model"]]  # a CLIP tower: large.format applies
    paper["checkpoints"]["openclip"] = {
        "vit_large_patch14_clip_quickgelu_224.openai": ["ViT-L-14-quickgelu", "openai"]
    }
    paper["bma"]["model"] = vit
    paper["train"]["per_model"] = {"vit_mini_x": {"epochs": 3}, "vit_mini_t": {"epochs": 3}}
    assert cross_field_problems(paper) == [
        "'train.per_model' names ['vit_mini_x'], which are not models"
    ]
    paper["train"]["per_model"] = {}
    paper["dataset"]["path"] = ""
    assert any("'dataset.path' is empty" in p for p in cross_field_problems(paper))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["quant"].update(formats=["int6", "int17"]),
            "'quant.formats': unknown number format 'int17'; known: int2, int3",
        ),
        (lambda c: c["bma"].update(formats=["fp32"]), "'bma.formats': fp32 is the reference"),
        (lambda c: c["fast"].update(format="fp5"), "'fast.format': unknown number format 'fp5'"),
        (lambda c: c["quant"].update(formats=[4]), "'quant.formats[0]': 4 is not of type"),
        (
            lambda c: c["quant"].update(bits=c["quant"].pop("formats") and [6, 4]),
            "'quant.bits' is now 'quant.formats' (format names): write quant.formats: [int6, int4]",
        ),
        (
            lambda c: c["large"].update(bits=c["large"].pop("format") and 5),
            "'large.bits' is now 'large.format' (format names): write large.format: int5",
        ),
        (lambda c: c["lpe"].update(ensemble_size=0), "'lpe.ensemble_size' = 0 is out of range"),
        (
            lambda c: c.update(models=["vit_mini_t", "resnet"]),
            "'models': 'resnet' is not a registered mini model (vit_mini_t, vit_mini_s",
        ),
        (
            lambda c: c["dataset"].update(name="mnist"),
            "'dataset.name' = 'mnist' is not allowed; allowed values: mnist1d",
        ),
        (lambda c: c.update(colour="red"), "unknown key(s) 'colour'; allowed keys:"),
        (lambda c: c["train"].update(epoch=3), "unknown key(s) 'epoch' in 'train'"),
        (lambda c: c["lpe"].update(seeds=[0, -1]), "'lpe.seeds[1]' = -1 is out of range"),
        (lambda c: c["train"].update(seed=-2), "'train.seed' = -2 is out of range"),
        (lambda c: c["train"].update(lr=0), "'train.lr' = 0 is out of range; allowed: number > 0"),
        (lambda c: c["lpe"].update(seeds=[]), "'lpe.seeds' = []"),
    ],
)
def test_bad_values_are_named_with_allowed_values(change, message):
    config = mini()
    change(config)
    with pytest.raises(ConfigError) as info:
        validate(config, SCHEMA)
    assert message in str(info.value)


def test_all_problems_are_reported_at_once():
    config = mini()
    config["quant"]["formats"] = ["int20"]
    config["lpe"]["ensemble_size"] = 0
    config["bma"]["bits"] = config["bma"].pop("formats")
    with pytest.raises(ConfigError, match=r"3 problem\(s\)"):
        validate(config, SCHEMA)


def test_format_names_are_normalised_at_validation():
    config = mini()
    config["quant"]["formats"] = [" INT6", "FP8_E4M3"]
    config["fast"]["format"] = "Int5"
    filled = validate(config, SCHEMA)
    assert filled["quant"]["formats"] == ["int6", "fp8_e4m3"] and filled["fast"]["format"] == "int5"


def test_fill_defaults_does_not_modify_its_input():
    config = {"quant": {"formats": ["int4"]}}
    filled = fill_defaults(config, SCHEMA)
    assert config == {"quant": {"formats": ["int4"]}}
    assert filled["quant"]["per_channel"] is True


def test_readme_documents_every_config_key():
    readme = (ROOT / "docs/configuration.md").read_text()

    def leaves(schema, prefix=""):
        for key, sub in schema.get("properties", {}).items():
            if sub.get("type") == "object":
                yield from leaves(sub, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    missing = [key for key in leaves(SCHEMA) if f"`{key}`" not in readme]
    assert not missing, f"docs/configuration.md's table lacks {missing}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["bma"].update(model="vit_mini_l") or c.update(models=["vit_mini_t"]),
            "'bma.model' = 'vit_mini_l' is not in 'models': add it there",
        ),
        (
            lambda c: c["bma"]["swag"].update(start_epoch=3),
            "'bma.swag.start_epoch' = 3 leaves no epoch to collect snapshots in",
        ),
        (
            lambda c: c["bma"]["swag"].update(rank=40),
            "'bma.swag.rank' = 40 is larger than the 37 snapshots",  # (3 - 1) x 94 steps / 5
        ),
        (lambda c: c["bma"]["ivon"].update(ess=0), "'bma.ivon.ess' = 0 is out of range"),
        (lambda c: c["landscape"].update(grid=2), "'landscape.grid' = 2 is out of range"),
    ],
)
def test_contradicting_bma_settings_are_named(change, message):
    config = mini()
    change(config)
    with pytest.raises(ConfigError) as info:
        validate(config, SCHEMA)
    assert message in str(info.value)


def _problems(change: dict) -> str:
    config = mini()
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    with pytest.raises(ConfigError) as err:
        validate(config, SCHEMA)
    return str(err.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"baselines.formats": ["fp4_e2m1"]}, "'baselines.formats': 'fp4_e2m1' is not an INT-b"),
        ({"figure1.format": "nf4"}, "'figure1.format': 'nf4' is not an INT-b format"),
        ({"figure1.format": "int99"}, "'figure1.format': unknown number format 'int99'"),
        ({"lpe.ensemble_size": 10.0}, "'lpe.ensemble_size' = 10.0 is not an integer"),
        ({"dataset.train": 12000.0}, "'dataset.train' = 12000.0 is not an integer"),
        ({"fast.copies": 2.5}, "'fast.copies' = 2.5 is not an integer"),
        ({"train.lr": float("nan")}, "'train.lr' = nan is not a finite number"),
        ({"bma.sgd.lr": float("inf")}, "'bma.sgd.lr' = inf is not a finite number"),
        ({"baselines.gaussian_scales": [0.01, float("inf")]}, "gaussian_scales[1]' = inf is not"),
        ({"dataset.test": 10**12}, "'dataset.test' = 1000000000000 is out of range"),
        ({"lpe.seeds": [0, 0]}, "'lpe.seeds' = [0, 0]: [0, 0] has non-unique elements"),
        ({"fast.seeds": [1, 1]}, "'fast.seeds' = [1, 1]: [1, 1] has non-unique elements"),
        ({"bma.seeds": [2, 2]}, "'bma.seeds' = [2, 2]: [2, 2] has non-unique elements"),
        ({"fast.seeds": []}, "'fast.seeds' = []: [] should be non-empty"),
        ({"fast.table5_sizes": []}, "'fast.table5_sizes' = []: [] should be non-empty"),
        ({"fast.table5_sizes": [5, 5]}, "'fast.table5_sizes' = [5, 5]: [5, 5] has non-unique"),
        ({"baselines.dropout_rates": [0.1, 0.1]}, "'baselines.dropout_rates' = [0.1, 0.1]"),
        ({"baselines.bits": [6, 1]}, "'baselines.bits' is now 'baselines.formats' (format names)"),
        ({"figure1.bits": 4}, "'figure1.bits' is now 'figure1.format' (format names): write"),
        ({"fast.sse.lr": [0.01, 0]}, "'fast.sse.lr[1]' = 0 is out of range"),
        ({"fast.csgld.lr": []}, "'fast.csgld.lr' = []: [] should be non-empty"),
        ({"train.per_model": {"vit_mini_t": {"epochs": 0}}}, "epochs' = 0 is out of range"),
        ({"train_noise.models": ["vit_mini_x"]}, "'train_noise.models' lists 'vit_mini_x', which"),
        ({"train_noise.seeds": [0, 1]}, "'train_noise.seeds' [0, 1] repeat 'train.seed' = 0"),
        ({"train.per_model": {"vit_mini_t": {"lr": 1, "wd": 2}}}, "unknown key(s) 'wd' in 'train."),
        ({"formats.names": ["int4", "fp5"]}, "'formats.names': unknown number format 'fp5'; known"),
        ({"formats.names": ["fp32"]}, "'formats.names': fp32 is every model's reference row"),
        ({"formats.names": ["int17"]}, "unknown number format 'int17'"),
        ({"formats.models": ["vit_mini_x"]}, "'formats.models': 'vit_mini_x' is not in 'models'"),
        ({"formats.names": []}, "'formats.models' is set but 'formats.names' is empty"),
        ({"landscape.seed": 5}, "'landscape.seed' = 5 is not in 'bma.seeds' [0, 1, 2]"),
        ({"landscape.seed": 5}, "'landscape.seed' = 5 is not in 'fast.seeds' [0, 1, 2]"),
        ({"fast.seeds": [0, 3]}, "'fast.seeds' [3] are not in 'bma.seeds' [0, 1, 2]"),
        ({"bma.seeds": [1, 2]}, "'landscape.seed' = 0 is not in 'bma.seeds' [1, 2]"),
    ],
)
def test_values_that_used_to_fail_late_or_silently_stop_with_their_key(change, message):
    assert message in _problems(change)


def test_every_list_in_the_schema_refuses_duplicates():
    # a duplicated entry (seed, size, model, candidate) would duplicate rows in scores.csv
    def walk(schema, path):
        if schema.get("type") == "array" and path != "checkpoints.openclip.*":  # a fixed pair
            assert schema.get("uniqueItems") is True, f"'{path}' accepts duplicates"
        for key, sub in schema.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{path}.*")

    walk(SCHEMA, "")


def test_a_config_file_that_is_not_a_mapping_or_not_yaml_is_named(tmp_path):
    from lpe.tools.config import load_config_file, main

    listing, broken = tmp_path / "list.yaml", tmp_path / "broken.yaml"
    listing.write_text("- quant\n- lpe\n")
    broken.write_text("quant:\n  formats: [int4, int6\n")
    with pytest.raises(ConfigError, match=rf"{listing}: a config file must be a mapping"):
        load_config_file(listing)
    with pytest.raises(ConfigError, match=rf"{broken}, line 3, column 1: not valid YAML"):
        load_config_file(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text("lpe:\n  seeds: [0, 0]\n")
    with pytest.raises(SystemExit, match=rf"(?s){bad}: invalid config.*'lpe.seeds'"):
        main([str(bad)])


def test_the_paper_profile_on_a_class_subset_is_a_valid_overlay():
    """config/paper_subset.yaml over config/paper.yaml (snakemake merges --configfile files key
    by key) passes the schema and the cross-field rules, keeps a 1000-class ImageNet profile and
    drops only what a subset cannot run."""
    from snakemake.utils import update_config

    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    update_config(config, yaml.safe_load((ROOT / "config/paper_subset.yaml").read_text()))
    checked = validate(config, SCHEMA)
    assert checked["profile"] == "paper" and checked["dataset"]["name"] == "imagenet"
    assert checked["bma"]["model"] in checked["models"] and checked["llm"]["models"] == []
    assert checked["formats"]["models"] == checked["models"]
    steps = -(-checked["bma"]["ivon"]["ess"] // checked["bma"]["batch_size"])
    snapshots = steps * (checked["bma"]["epochs"] - checked["bma"]["swag"]["start_epoch"])
    assert checked["bma"]["swag"]["rank"] <= snapshots // checked["bma"]["swag"]["collect_every"]
