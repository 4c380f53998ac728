# The predictions each score table reads, shared by the rule file that makes them and the
# one that scores them (report.smk): Table 1's, Table 6's, the retrained copies' and claim
# 5's checkpoints'.

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
    preds_file(BASELINE_MODEL, f"{b}-seed{s}")
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
