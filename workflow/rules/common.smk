# Config validation, paths and the list of runs; everything else is in lpe/.
import re
from typing import NamedTuple

from lpe.tools.config import ZEROSHOT_SUFFIX, ConfigError, load_schema, validate
from lpe.core.settings import pick, settings_json
from lpe.formats.names import int_name
from lpe.sources.registry import family as source_family
from lpe.sources.registry import fast_with_lpe

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


def settings(*keys, **job):
    """The config keys a job's stage reads, with the job's own values, as the stage's
    --settings JSON (lpe.core.settings): a param, so a changed setting reruns the job and no
    other. tests/test_settings.py checks each job's keys against what its stage reads.
    """
    return settings_json(pick(config, [k for group in keys for k in group]), job=job)


# key groups the stages read (lpe.core.settings): the rounding policy, the inference precision,
# the temperature-scaling control (Tables 1, 5, 6), and the fine-tuning runs
QUANT = ("quant.per_channel", "quant.exclude", "quant.min_ndim")
HOLDOUT = ("dataset.holdout",)
DTYPE = ("predict.dtype", *HOLDOUT)
CALIBRATED = ("predict.split", *DTYPE)
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


def openclip_tower(model):
    """[ARCH, TAG] of a zero-shot model's text tower (its download), or none."""
    if not model.endswith(ZEROSHOT_SUFFIX):
        return None
    return config["checkpoints"]["openclip"][model.removesuffix(ZEROSHOT_SUFFIX)]


def data_input(wildcards):
    """The data file as a rule input (mini); an image folder is not a workflow file."""
    return {} if IMAGES else {"data": DATA}


def work(path):
    return f"work/{PROFILE}/{path}"


def results(path):
    return f"results/{PROFILE}/{path}"


def figures(path):
    return f"figures/{PROFILE}/{path}"


def runs(formats=None):
    """Predictions to make per model: FP32, RTN per format, LPE-BSR per format x seed; the
    formats are names (lpe.formats.names), Table 1's INT-b of quant.bits by default."""
    if formats is None:
        formats = [int_name(b) for b in config["quant"]["bits"]]
    names = ["fp32"]
    for fmt in formats:
        names.append(f"rtn-{fmt}-seed0")
        names += [f"bsr-{fmt}-seed{seed}" for seed in config["lpe"]["seeds"]]
    return names


def predictions():
    return [work(f"preds/{m}/{run}.npz") for m in config["models"] for run in runs()]


FORMATS = config["formats"]


def format_predictions(folder="preds"):
    """LPE-BSR across number systems: FP32, RTN and LPE-BSR of formats.models x formats.names
    (Table 1's INT-b files where a format is one of quant.bits: the same jobs); their
    predictions files, or (folder="members") their member folders (no FP32 member)."""
    ext = ".npz" if folder == "preds" else ""
    return [
        work(f"{folder}/{m}/{run}{ext}")
        for m in FORMATS["models"]
        for run in runs(FORMATS["names"])
        if folder == "preds" or run != "fp32"
    ]


def format_targets():
    """The experiment's member folders, predictions, scores, table and figure (none without
    formats.models)."""
    if not FORMATS["models"]:
        return []
    return [
        *format_predictions(folder="members"),
        *format_predictions(),
        results("formats/scores.csv"),
        *[results(f"tables/table_formats.{ext}") for ext in ("csv", "md", "tex")],
        *[figures(f"lpe_across_formats.{ext}") for ext in ("png", "pdf")],
        report_page("table_formats"),
    ]


NOISE = config["train_noise"]
# the retrained copies of train_noise.models, as model names of the work/ paths
RETRAINED = (
    [f"{m}-trainseed{s}" for m in NOISE["models"] for s in NOISE["seeds"]]
    if not IMAGES
    else []
)


def retrained_predictions(name, folder="preds"):
    """FP32, RTN and LPE-BSR (first lpe seed) of one retrained copy, per precision: their
    predictions files, or (folder="members") their member folders."""
    first = config["lpe"]["seeds"][0]
    runs = ["fp32"]
    for bits in config["quant"]["bits"]:
        runs += [f"rtn-int{bits}-seed0", f"bsr-int{bits}-seed{first}"]
    ext = ".npz" if folder == "preds" else ""
    return [work(f"{folder}/{name}/{run}{ext}") for run in runs]


def retrained_scores():
    return [results(f"train_noise/{name}/scores.csv") for name in RETRAINED]


LARGE = config["large"]


def ensemble_size(model):
    """Members per LPE-BSR seed: Table 1's, bma's for fine-tuned models, large's (Table 3)."""
    if model in LARGE["models"]:
        return LARGE["ensemble_size"]
    return (
        config["bma"]["ensemble_size"]
        if "-" in model
        else config["lpe"]["ensemble_size"]
    )


LLM = config["llm"]
LLMS = {
    re.sub("[/]", "--", name): name for name in LLM["models"]
}  # path-safe -> hub name


def large_predictions():
    """Table 3 and Figure 7: FP32, RTN and LPE-BSR per seed of each large model and LLM."""
    bits = LARGE["bits"]
    names = ["fp32", f"rtn-int{bits}-seed0"]
    names.extend(f"bsr-int{bits}-seed{s}" for s in LARGE["seeds"])
    models = [*LARGE["models"], *LLMS]
    return [work(f"preds/{m}/{n}.npz") for m in models for n in names]


def large_targets():
    if not (LARGE["models"] or LLMS):
        return []
    bits = LARGE["bits"]
    names = [f"rtn-int{bits}-seed0"]
    names.extend(f"bsr-int{bits}-seed{s}" for s in LARGE["seeds"])
    members = [work(f"members/{m}/{n}") for m in LARGE["models"] for n in names]
    checkpoints = [work(f"checkpoints/{m}.safetensors") for m in LARGE["models"]]
    checkpoints.extend(work(f"llm/{m}") for m in LLMS)
    return [
        *checkpoints,
        *members,
        *large_predictions(),
        results("large/scores.csv"),
        *[results(f"tables/table3.{ext}") for ext in ("csv", "md", "tex")],
        *[figures(f"fig7_large_models.{ext}") for ext in ("png", "pdf")],
        report_page("table3"),
    ]


BMA_MODEL = config["bma"]["model"]
BMA_SEEDS = config["bma"]["seeds"]
LANDSCAPE_FIGURES = {
    "fig3_landscape_swag": "swag",
    "fig6_landscape_ivon": "ivon",
    "fig4_landscape_sse": "sse",
}
LANDSCAPE_TITLES = {
    "fig3_landscape_swag": "Figure 3: SWAG",
    "fig6_landscape_ivon": "Figure 6: IVON",
    "fig4_landscape_sse": "Figure 4: snapshot ensemble (SSE)",
}


def bma_runs():
    """Per fine-tuning run: FP32 solution, LPE-BSR per precision x seed, BMA per seed."""
    runs = {}
    for optimizer in ("sgd", "swag", "ivon"):
        names = ["fp32"]
        for bits in config["bma"]["bits"]:
            names += [f"bsr-int{bits}-seed{seed}" for seed in config["bma"]["seeds"]]
        if optimizer != "sgd":
            names += [f"bma-seed{seed}" for seed in config["bma"]["seeds"]]
        runs[f"{BMA_MODEL}-{optimizer}"] = names
    return runs


def bma_predictions():
    return [
        work(f"preds/{m}/{run}.npz") for m, names in bma_runs().items() for run in names
    ]


def landscape_file(optimizer):
    bits, seed = config["bma"]["bits"][0], config["landscape"]["seed"]
    return work(f"landscape/{BMA_MODEL}-{optimizer}-int{bits}-seed{seed}.npz")


def bma_intermediates():
    members = [
        work(f"members/{m}/{run}")
        for m, names in bma_runs().items()
        for run in names
        if run.startswith("bsr")
    ]
    solutions = [
        work(f"checkpoints/{BMA_MODEL}-{o}.safetensors")
        for o in ("sgd", "swag", "ivon")
    ]
    posteriors = [
        work(f"posteriors/{BMA_MODEL}-{o}.safetensors") for o in ("swag", "ivon")
    ]
    landscapes = [landscape_file(o) for o in ("swag", "ivon")]
    return solutions + posteriors + members + bma_predictions() + landscapes


BASELINE_MODEL = config["baselines"]["model"]


def seeds_of(model):
    """LPE-BSR ensemble seeds of a pretrained model: Table 3's (large) or Table 1's."""
    return LARGE["seeds"] if model in LARGE["models"] else config["lpe"]["seeds"]


# Table 6's ensembles (lpe.stages.baselines), each with the config list its setting is chosen from;
# matched noise has none: it takes LPE-BSR's chosen precision.
BASELINES = {
    "bsr": "bits",
    "gaussian": "gaussian_scales",
    "matched": None,
    "dropout": "dropout_rates",
}


def baseline_choice_input(wildcards):
    """Matched noise reads LPE-BSR's choice; the others make their own."""
    if BASELINES[wildcards.baseline] is None:
        return {"bsr_choice": work(f"baselines/{wildcards.model}/bsr-choice.json")}
    return {}


def baseline_choices():
    return [work(f"baselines/{BASELINE_MODEL}/{b}-choice.json") for b in BASELINES]


def baseline_predictions():
    """Table 6's predictions: the baselines stage's ensembles, then the model's FP32."""
    own = [
        work(f"preds/{BASELINE_MODEL}/{b}-seed{s}.npz")
        for b in BASELINES
        for s in seeds_of(BASELINE_MODEL)
    ]
    return own, [work(f"preds/{BASELINE_MODEL}/fp32.npz")]


FAST = config["fast"]
# the fast sources of lpe.sources.registry: each with and without LPE-BSR, and those without copies
FAST_SOURCES = [s.name for s in source_family("fast")]
FAST_METHODS = fast_with_lpe()
FAST_ALONE = [s.name for s in source_family("fast") if not s.lpe_copies]
FAST_FIGURES = {
    "fig5_fast_sse_csgld": ["sse", "csgld"],
    "fig9_fast_sse_de_multiivon": ["sse", "de", "multiivon"],
}


def fast_reuse(method):
    """Run 1 of DE and MultiIVON: the SGD and IVON runs of Figure 2."""
    if method == "de":
        return {"reuse": work(f"checkpoints/{BMA_MODEL}-sgd.safetensors")}
    if method == "multiivon":
        return {
            "reuse": work(f"checkpoints/{BMA_MODEL}-ivon.safetensors"),
            "reuse_posterior": work(f"posteriors/{BMA_MODEL}-ivon.safetensors"),
        }
    return {}


def fast_predictions():
    """Figures 5, 9 and Table 5's predictions: each method's FP32 and LPE-BSR files."""
    files = [work(f"preds/fast/{method}/fp32.npz") for method in FAST_ALONE]
    for method in FAST_METHODS:
        files.append(work(f"preds/fast/{method}/fp32.npz"))
        files += [
            work(f"preds/fast/{method}/bsr-int{FAST['bits']}-seed{s}.npz")
            for s in FAST["seeds"]
        ]
    return files


def table5_predictions():
    """MAP and LPE-BSR of Table 5: the SGD solution of Figure 2 and its LPE-BSR ensembles."""
    files = [work(f"preds/{BMA_MODEL}-sgd/fp32.npz")]
    files.extend(
        work(f"preds/{BMA_MODEL}-sgd/bsr-int{FAST['bits']}-seed{s}.npz")
        for s in FAST["seeds"]
    )
    return files


def fast_landscape_file():
    return work(
        f"landscape/fast-sse-int{FAST['bits']}-seed{config['landscape']['seed']}.npz"
    )


class MemberRuns(NamedTuple):
    """The low precision runs of one kind of model, made per model x precision by one job."""

    pattern: str  # the models' wildcard pattern
    seeds: list  # LPE-BSR ensemble seeds
    members: int  # members per seed
    rtn: bool  # whether the job also makes the rounding-to-nearest member


def member_families():
    """Pretrained models (Table 1, Figure 1's sizes, Table 6), large ones (Table 3) and the
    fine-tuned solutions of Figures 2-6 and Table 5; a kind without models has no rule.
    """
    pretrained = [m for m in config["models"] if m not in LARGE["models"]]
    families = {
        "pretrained": (
            pretrained,
            config["lpe"]["seeds"],
            config["lpe"]["ensemble_size"],
            True,
        ),
        "large": (LARGE["models"], LARGE["seeds"], LARGE["ensemble_size"], True),
        "retrained": (
            RETRAINED,
            config["lpe"]["seeds"][:1],
            config["lpe"]["ensemble_size"],
            True,
        ),
        "finetuned": (
            [f"{BMA_MODEL}-{o}" for o in ("sgd", "swag", "ivon")],
            config["bma"]["seeds"],
            config["bma"]["ensemble_size"],
            False,
        ),
    }
    return {
        name: MemberRuns("|".join(map(re.escape, models)), seeds, members, rtn)
        for name, (models, seeds, members, rtn) in families.items()
        if models
    }


def intermediates_table1():
    """Checkpoints, member folders and predictions of Table 1.

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


def intermediates():
    """Every intermediate of the mini profile (see intermediates_table1)."""
    return (
        intermediates_table1()
        + bma_intermediates()
        + baseline_predictions()[0]
        + baseline_choices()
        + fast_predictions()
        + [fast_landscape_file()]
        + retrained_intermediates()
    )


def fast_checkpoints():
    """The trained checkpoints of the fast ensembles' starting model (bma.model and its
    train_noise copies): claim 5's checkpoint band, when there are at least two."""
    names = [
        BMA_MODEL,
        *[r for r in RETRAINED if r.startswith(f"{BMA_MODEL}-trainseed")],
    ]
    if len(names) < 2:
        return []
    if config["lpe"]["ensemble_size"] < FAST["copies"]:
        raise ValueError(
            f"lpe.ensemble_size ({config['lpe']['ensemble_size']}) is below fast.copies "
            f"({FAST['copies']}): claim 5's checkpoint band scores LPE-BSR at fast.copies "
            f"members on each checkpoint of {BMA_MODEL} (train_noise)"
        )
    return names


def fast_checkpoint_predictions(name):
    """FP32 and LPE-BSR INT-fast.bits (first lpe seed) of one of fast_checkpoints()."""
    first = config["lpe"]["seeds"][0]
    return [
        work(f"preds/{name}/fp32.npz"),
        work(f"preds/{name}/bsr-int{FAST['bits']}-seed{first}.npz"),
    ]


def retrained_intermediates():
    """train_noise's checkpoints, member folders and predictions."""
    files = []
    for name in RETRAINED:
        files.append(work(f"checkpoints/{name}.safetensors"))
        files += retrained_predictions(name)
        files += retrained_predictions(name, folder="members")[1:]  # no FP32 member
    return files


def train_settings(model):
    """train.*, with train.per_model[model]'s epochs and lr where given."""
    settings = {k: v for k, v in config["train"].items() if k != "per_model"}
    return {**settings, **config["train"]["per_model"].get(model, {})}


def trained_checkpoints():
    """The Table 1 checkpoints trained here (mini), whose convergence gate is reported; the
    paper profile's are downloaded (no training curve)."""
    return (
        []
        if IMAGES
        else [work(f"checkpoints/{m}.safetensors") for m in config["models"]]
    )


def claims_inputs(wildcards):
    """The files behind the convergence gate and claims 4-6 and 8."""
    return {
        "checkpoints": trained_checkpoints(),
        "bma": results("bma/scores.csv"),
        "ivon": work(f"posteriors/{BMA_MODEL}-ivon.safetensors"),
        "baselines": results("baselines/scores.csv"),
        "choices": baseline_choices(),
        "fast": results("fast/scores.csv"),
        "retrained": retrained_scores(),
        "fast_checkpoints": [
            results(f"fast/checkpoints/{n}.csv") for n in fast_checkpoints()
        ],
        "sources": [work(f"fast/{m}") for m in ("sse", "csgld")],
        **({"formats": results("formats/scores.csv")} if FORMATS["models"] else {}),
    }


class ReportPage(NamedTuple):
    """A Markdown result rendered as a page of the HTML report (rule report_page)."""

    source: str
    title: str
    category: str
    caption: str


REPORT_PAGES = {
    "table1": ReportPage(
        results("tables/table1.md"),
        "Table 1: FP32, RTN and LPE-BSR per model and precision",
        "Table 1",
        "Test NLL, error and ambiguity (mean ± sd over BSR seeds), ensemble size and memory.",
    ),
    "claims": ReportPage(
        results("claims.md"),
        "Claims report",
        "Claims",
        "Each claim of the paper checked on this profile's numbers, with its verdict.",
    ),
    "table5": ReportPage(
        results("tables/table5.md"),
        "Table 5: MAP, BatchEnsemble, DE and LPE-BSR",
        "Fast ensembles",
        "Average loss, ambiguity, ensemble loss, NLL, error, ECE, memory and training budget.",
    ),
    "table6": ReportPage(
        results("tables/table6.md"),
        "Table 6: Gaussian noise and MC dropout against LPE-BSR",
        "Baselines",
        "Each method's one setting (LPE-BSR's precision too) chosen on the validation split; test numbers.",
    ),
    "table_formats": ReportPage(
        results("tables/table_formats.md"),
        "LPE-BSR across number systems",
        "Number systems",
        "FP32, RTN and LPE-BSR in each number format: test NLL, error, ECE, ambiguity, memory.",
    ),
    "table3": ReportPage(
        results("tables/table3.md"),
        "Table 3: large models, FP32 vs RTN vs LPE-BSR",
        "Large models",
        "CLIP towers as zero-shot classifiers and language models on MMLU.",
    ),
}


def landscape_category(wildcards):
    """Figures 3 and 6 (SWAG, IVON) belong to the BMA comparison, Figure 4 (SSE) to the fast
    ensembles."""
    sse = LANDSCAPE_FIGURES[wildcards.figure] == "sse"
    return "Fast ensembles" if sse else "BMA"


def report_page(page):
    return results(f"report/{page}.html")


def table1_targets():
    return [
        *intermediates_table1(),
        results("scores.csv"),
        *[results(f"tables/table1.{ext}") for ext in ("csv", "md", "tex")],
        *[figures(f"nll_vs_ensemble_size.{ext}") for ext in ("png", "pdf")],
        *[figures(f"nll_vs_inference_time.{ext}") for ext in ("png", "pdf")],
        results("claims.md"),
        report_page("table1"),
        report_page("claims"),
    ]


def finetuning_targets():
    """Figures 2-6, 8, 9, Tables 5 and 6 and their scores: fine-tuning and baselines."""
    return [
        results("bma/scores.csv"),
        *[
            figures(f"{name}.{ext}")
            for name in ("fig2_nll_vs_ensemble_size_bma", "fig8_nll_vs_memory_bma")
            for ext in ("png", "pdf")
        ],
        *[
            figures(f"{name}.{ext}")
            for name in LANDSCAPE_FIGURES
            for ext in ("png", "pdf")
        ],
        *[results(f"landscapes/{name}.csv") for name in LANDSCAPE_FIGURES],
        results("baselines/scores.csv"),
        *[results(f"tables/table6.{ext}") for ext in ("csv", "md", "tex")],
        results("fast/scores.csv"),
        *[results(f"tables/table5.{ext}") for ext in ("csv", "md", "tex")],
        *[figures(f"{name}.{ext}") for name in FAST_FIGURES for ext in ("png", "pdf")],
        report_page("table5"),
        report_page("table6"),
        *(
            [results("bma/model_choice.md")]
            if config["bma"]["model_rule"] and not IMAGES
            else []
        ),
    ]


def all_targets():
    """Everything; the paper profile adds Table 3 and Figure 7, the mini profile Figure 1 (a
    sketch drawn on the mini data)."""
    targets = [
        *intermediates(),
        *table1_targets(),
        *finetuning_targets(),
        *format_targets(),
    ]
    if IMAGES:
        return [*targets, *large_targets()]
    return [
        *targets,
        *[figures(f"fig1_concept.{ext}") for ext in ("png", "pdf")],
        results("fig1_concept.csv"),
    ]


TRAINED = "|".join(re.escape(m) for m in [*config["models"], *LARGE["models"]])
# the downloads: plain timm checkpoints, and CLIP towers whose zero-shot head is built on a GPU
DOWNLOADED = "|".join(re.escape(m) for m in config["models"]) or "^$"
ZEROSHOT = "|".join(re.escape(m) for m in LARGE["models"]) or "^$"


wildcard_constraints:
    # a trained model, one fine-tuned from it (vit_mini_s-swag), or one retrained (train_noise)
    model=f"({TRAINED})(-(sgd|swag|ivon|trainseed\\d+))?",
    method="rtn|bsr",
    bits=r"\d+",
    # a number format's name (lpe.formats.names): int4, fp8_e4m3, nf4, mxfp4
    fmt=r"[a-z]+\d+(_e\d+m\d+)?",
    seed=r"\d+",
