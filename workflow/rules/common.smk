# Config validation, paths and the list of runs; everything else is in lpe/.
import re
from pathlib import Path
from typing import NamedTuple

import yaml

from lpe.tools.config import ZEROSHOT_SUFFIX, ConfigError, load_schema, validate
from lpe.core.settings import lookup, pick, settings_json
from lpe.methods import family as source_family
from lpe.methods import fast_with_lpe, finetuned_runs, posterior_optimizers
from lpe.methods import table6 as table6_methods

try:
    # Validate before any job: a bad key or value stops the run with a message naming it.
    config.update(
        validate(
            config, load_schema(workflow.source_path("../schemas/config.schema.yaml"))
        )
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None

PROFILE = config["profile"]
ENV = "../../environment.yml"
# The paper profile reads an image folder in place (checked by the stages, so that a dry run
# resolves with a placeholder path); the mini profile's data file is made by the workflow.
IMAGES = config["dataset"]["name"] == "imagenet"
DATA = (
    config["dataset"]["path"]
    if IMAGES
    else f"work/{PROFILE}/data/{config['dataset']['name']}.npz"
)


# the paths of every kind of file and the run names (work/, results/, figures/)
include: "paths.smk"


def settings(*keys, **job):
    """The config keys a job's stage reads, with the job's own values, as the stage's
    --settings JSON (lpe.core.settings): a param, so a changed setting reruns the job and no
    other. tests/cli/test_settings.py checks each job's keys against what its stage reads.
    """
    return settings_json(pick(config, [k for group in keys for k in group]), job=job)


# key groups the stages read (lpe.core.settings): the rounding policy; a prediction's split (the
# temperature-scaling control of Tables 1, 5 and 6 too) and inference precision (all a landscape
# reads), and batch size; the fine-tuning runs
QUANT = ("quant.per_channel", "quant.exclude", "quant.min_ndim")
HOLDOUT = ("dataset.holdout",)
SPLIT = ("predict.split", "predict.dtype", *HOLDOUT)
PREDICT = (*SPLIT, "predict.batch_size")
FINETUNING = (
    *HOLDOUT,
    *("bma.epochs", "bma.batch_size", "bma.seed", "bma.checkpoint_every"),
    *(
        "bma.sgd",
        "bma.swag.rank",
        "bma.swag.start_epoch",
        "bma.swag.collect_every",
        "bma.ivon",
    ),
)


def resume_file(name):
    """A long training job's resumable state (lpe.core.resume), or none: work/<profile>/resume/
    holds no outputs, so a killed job's state survives."""
    return work(f"resume/{name}") if config["bma"]["checkpoint_every"] else None


def data_input(wildcards):
    """The data file as a rule input (mini); an image folder is not a workflow file."""
    return {} if IMAGES else {"data": DATA}


# Each precision by its format name (lpe.formats.names), as the config gives it (quant.formats,
# bma.formats, fast.format, large.format; validated and lower-cased by lpe.tools.config); the
# paths, the wildcards and the score CSVs carry the names.
QUANT_FORMATS = config["quant"]["formats"]
BMA_FORMATS = config["bma"]["formats"]
FAST_FORMAT = config["fast"]["format"]
LARGE_FORMAT = config["large"]["format"]


def runs(formats=QUANT_FORMATS):
    """Predictions to make per model: FP32, RTN per format, LPE-BSR per format x seed; the
    formats are names (lpe.formats.names), Table 1's quant.formats by default."""
    names = ["fp32"]
    for fmt in formats:
        names.append(rtn_run(fmt))
        names += [bsr_run(fmt, seed) for seed in config["lpe"]["seeds"]]
    return names


# what every landscape job passes its stage (lpe.stages.landscape): the data, the plane's settings
LANDSCAPE_PARAMS = {
    "data": DATA,
    "settings": settings(
        SPLIT, ("landscape.grid", "landscape.margin", "landscape.points")
    ),
}


def train_settings(model, **seed):
    """A training job's --settings: train.*, with train.per_model[model]'s epochs, lr and
    weight_decay where given (and a seed run's train.seed)."""
    train = {k: v for k, v in config["train"].items() if k != "per_model"}
    train.update(config["train"]["per_model"].get(model, {}), **seed)
    return settings_json({"train": train})


def openclip_tower(model):
    """[ARCH, TAG] of a zero-shot model's text tower (its download), or none."""
    if not model.endswith(ZEROSHOT_SUFFIX):
        return None
    return config["checkpoints"]["openclip"][model.removesuffix(ZEROSHOT_SUFFIX)]


NO_MODEL = (
    "(?!)"  # a wildcard pattern that matches nothing: a kind of model with no models
)


class MemberRuns(NamedTuple):
    """The low precision runs of one kind of model, made per model x precision by one job."""

    pattern: str  # the models' wildcard pattern
    seeds: list  # LPE-BSR ensemble seeds
    members: int  # members per seed
    rtn: bool  # whether the job also makes the rounding-to-nearest member


# Table 6's ensembles (lpe.stages.baselines), by name: the registry's lines (lpe.methods), each
# with the config list its setting is chosen from or the method whose choice it takes.
BASELINES = {s.name: s for s in table6_methods()}


def baseline_choice_input(wildcards):
    """Matched noise reads LPE-BSR's choice; the others make their own."""
    chooser = BASELINES[wildcards.baseline].choice_of
    if chooser:
        return {
            "bsr_choice": work(f"baselines/{wildcards.model}/{chooser}-choice.json")
        }
    return {}


FORMATS = config["formats"]
NOISE = config["train_noise"]
# the retrained copies of train_noise.models, as model names of the work/ paths
RETRAINED = (
    [f"{m}-trainseed{s}" for m in NOISE["models"] for s in NOISE["seeds"]]
    if not IMAGES
    else []
)


LARGE = config["large"]
BMA_MODEL = config["bma"]["model"]
# bma.model's rule measured on validation (mini profile; the paper profile fixes its model)
MODEL_CHOICE = (
    results("bma/model_choice.md")
    if config["bma"]["model_rule"] and not IMAGES
    else None
)
BMA_SEEDS = config["bma"]["seeds"]
BASELINE_MODEL = config["baselines"]["model"]


FAST = config["fast"]
# the fast sources of lpe.methods: each with and without LPE-BSR, and those without copies
FAST_SOURCES = [s.name for s in source_family("fast")]
FAST_METHODS = fast_with_lpe()
FAST_ALONE = [s.name for s in source_family("fast") if not s.lpe_copies]
# Figure 4's plane (fast.smk makes it, bma.smk draws it with the other landscapes)
FAST_LANDSCAPE = landscape_file("fast-sse", FAST_FORMAT, config["landscape"]["seed"])


TRAINED = "|".join(re.escape(m) for m in [*config["models"], *LARGE["models"]])
# the fine-tuning runs around bma.model (SGD's, each posterior method's: the registry's)
FINETUNED, POSTERIOR = finetuned_runs(), "|".join(
    map(re.escape, posterior_optimizers())
)
# the downloads: plain timm checkpoints, and CLIP towers whose zero-shot head is built on a GPU
DOWNLOADED = "|".join(re.escape(m) for m in config["models"]) or "^$"
ZEROSHOT = "|".join(re.escape(m) for m in LARGE["models"]) or "^$"


wildcard_constraints:
    # a trained model, one fine-tuned from it (vit_mini_s-swag), or one retrained (train_noise)
    model=f"({TRAINED})(-({'|'.join(FINETUNED)}|trainseed\\d+))?",
    method="rtn|bsr",
    # a number format's name (lpe.formats.names): int4, fp8_e4m3, nf4, mxfp4
    fmt=r"[a-z]+\d+(_e\d+m\d+)?",
    seed=r"\d+",
