# The predictions each score table reads, shared by the rule file that makes them and the
# one that scores them (report.smk): Table 1's, Table 6's, the retrained copies' and claim
# 5's checkpoints'; and what each kind of model's ensembles job makes (lpe.smk).

TABLE1_PREDICTIONS = [preds_file(m, run) for m in config["models"] for run in runs()]

# Table 6: each baseline's ensembles on baselines.model (a pretrained model: Table 1's seeds and
# ensemble size, or Table 3's), its choice on the validation split, and the model's FP32
BASELINE_LARGE = BASELINE_MODEL in LARGE["models"]
BASELINE_SEEDS = LARGE["seeds"] if BASELINE_LARGE else config["lpe"]["seeds"]
BASELINE_MEMBERS = (
    LARGE["ensemble_size"] if BASELINE_LARGE else config["lpe"]["ensemble_size"]
)
BASELINE_CHOICES = [
    work(f"baselines/{BASELINE_MODEL}/{b}-choice.json") for b in BASELINES
]
BASELINE_PREDICTIONS = [
    preds_file(BASELINE_MODEL, run_name(b, s))
    for b in BASELINES
    for s in BASELINE_SEEDS
]
BASELINE_FP32 = preds_file(BASELINE_MODEL, "fp32")

# train_noise: FP32, RTN and LPE-BSR (first lpe seed) per precision of each retrained copy
RETRAINED_RUNS = ["fp32"] + [
    run
    for fmt in QUANT_FORMATS
    for run in (rtn_run(fmt), bsr_run(fmt, config["lpe"]["seeds"][0]))
]
RETRAINED_PREDICTIONS = {
    name: [preds_file(name, run) for run in RETRAINED_RUNS] for name in RETRAINED
}
RETRAINED_SCORES = [results(f"train_noise/{name}/scores.csv") for name in RETRAINED]
# claim 5's checkpoint band: the trained checkpoints of the fast ensembles' starting model
# (bma.model and its train_noise copies), when there are at least two; FP32 and LPE-BSR at
# fast.format (first lpe seed) of each
FAST_CHECKPOINTS = [
    BMA_MODEL,
    *[r for r in RETRAINED if r.startswith(f"{BMA_MODEL}-trainseed")],
]
FAST_CHECKPOINTS = FAST_CHECKPOINTS if len(FAST_CHECKPOINTS) > 1 else []
FAST_CHECKPOINT_PREDICTIONS = {
    name: [
        preds_file(name, "fp32"),
        preds_file(name, bsr_run(FAST_FORMAT, config["lpe"]["seeds"][0])),
    ]
    for name in FAST_CHECKPOINTS
}
if FAST_CHECKPOINTS and config["lpe"]["ensemble_size"] < FAST["copies"]:
    raise WorkflowError(
        f"lpe.ensemble_size ({config['lpe']['ensemble_size']}) is below fast.copies "
        f"({FAST['copies']}): claim 5's checkpoint band scores LPE-BSR at fast.copies "
        f"members on each checkpoint of {BMA_MODEL} (train_noise)"
    )


# The kinds of model whose members are made per model x precision by one job: pretrained models
# (Table 1, Figure 1's sizes, Table 6), large ones (Table 3), train_noise's retrained copies and
# the fine-tuned solutions of Figures 2-6 and Table 5; a kind without models matches no model.
MEMBER_FAMILIES = {
    name: MemberRuns("|".join(map(re.escape, models)) or NO_MODEL, seeds, members, rtn)
    for name, (models, seeds, members, rtn) in {
        "pretrained": (
            [m for m in config["models"] if m not in LARGE["models"]],
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
            [f"{BMA_MODEL}-{o}" for o in FINETUNED],
            config["bma"]["seeds"],
            config["bma"]["ensemble_size"],
            False,
        ),
    }.items()
}


def ensemble_outputs(kind):
    """The member folders and predictions files of one ensembles job of ``kind``: one per
    LPE-BSR seed, and the RTN member's when the kind has one."""
    rtn = [rtn_run("{fmt}")] if kind.rtn else []
    return {
        "members": [
            directory(members_dir("{model}", bsr_run("{fmt}", s))) for s in kind.seeds
        ],
        "preds": [preds_file("{model}", bsr_run("{fmt}", s)) for s in kind.seeds],
        "rtn": [directory(members_dir("{model}", run)) for run in rtn],
        "rtn_preds": [preds_file("{model}", run) for run in rtn],
    }


def ensemble_params(kind):
    """An ensembles job's data, ensemble size, seeds and settings."""
    return {
        "data": DATA,
        "members": kind.members,
        "seeds": kind.seeds,
        "settings": settings(PREDICT, QUANT),
    }
