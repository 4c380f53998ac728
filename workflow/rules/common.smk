# Config validation, paths and the list of runs; everything else is in lpe/.
import shlex

from lpe.config import ConfigError, load_schema, validate

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
DATA = f"work/{PROFILE}/data/{config['dataset']['name']}.npz"


def work(path):
    return f"work/{PROFILE}/{path}"


def results(path):
    return f"results/{PROFILE}/{path}"


def figures(path):
    return f"figures/{PROFILE}/{path}"


def runs():
    """Predictions to make per model: FP32, RTN per precision, LPE-BSR per precision x seed."""
    names = ["fp32"]
    for bits in config["quant"]["bits"]:
        names.append(f"rtn-int{bits}-seed0")
        names += [f"bsr-int{bits}-seed{seed}" for seed in config["lpe"]["seeds"]]
    return names


def predictions():
    return [work(f"preds/{m}/{run}.npz") for m in config["models"] for run in runs()]


def intermediates():
    """Checkpoints, member folders and predictions.

    They are targets of `all` so that a missing one is remade (Snakemake does not remake a
    missing intermediate whose consumers are up to date), which also makes a fresh clone,
    where only results/ and figures/ are committed, regenerate everything from the data up.
    """
    members = [
        work(f"members/{m}/{run}")
        for m in config["models"]
        for run in runs()
        if run != "fp32"
    ]
    checkpoints = [work(f"checkpoints/{m}.safetensors") for m in config["models"]]
    return checkpoints + members + predictions()


def all_targets():
    return [
        *intermediates(),
        results("scores.csv"),
        *[results(f"tables/table1.{ext}") for ext in ("csv", "md", "tex")],
        *[figures(f"nll_vs_ensemble_size.{ext}") for ext in ("png", "pdf")],
        results("claims.md"),
    ]


wildcard_constraints:
    model="|".join(config["models"]),
    method="rtn|bsr",
    bits=r"\d+",
    seed=r"\d+",
