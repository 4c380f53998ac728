# Low precision members as files, and the predictions of every run.


# Table 1's predictions, and its checkpoints, member folders and predictions: targets of `all`,
# so that a missing one is remade (Snakemake does not remake a missing intermediate whose
# consumers are up to date), which also makes a fresh clone, where only results/ and figures/
# are committed, regenerate everything from the data up.
TABLE1_INTERMEDIATES = [
    *[checkpoint_file(m) for m in config["models"]],
    *[members_dir(m, run) for m in config["models"] for run in runs()[1:]],  # no FP32
    *TABLE1_PREDICTIONS,
]

# The kinds of model whose members are made per model x precision by one job: pretrained models
# (Table 1, Figure 1's sizes, Table 6), large ones (Table 3), train_noise's retrained copies and
# the fine-tuned solutions of Figures 2-6 and Table 5; a kind without models has no rule.
MEMBER_FAMILIES = {
    name: MemberRuns("|".join(map(re.escape, models)), seeds, members, rtn)
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
            [f"{BMA_MODEL}-{o}" for o in ("sgd", "swag", "ivon")],
            config["bma"]["seeds"],
            config["bma"]["ensemble_size"],
            False,
        ),
    }.items()
    if models
}

RETRAINED_INTERMEDIATES = [
    path
    for name in RETRAINED
    for path in (
        checkpoint_file(name),
        *RETRAINED_PREDICTIONS[name],
        *[members_dir(name, run) for run in RETRAINED_RUNS[1:]],  # no FP32 member
    )
]

LPE_TARGETS = [
    *TABLE1_INTERMEDIATES,
    *BASELINE_PREDICTIONS,
    *BASELINE_CHOICES,
    *RETRAINED_INTERMEDIATES,
]


# One job per model x number format: it writes the members of every seed (and the RTN member) and
# predicts them, in one process (lpe.stages.ensembles). The seeds, ensemble size and whether RTN is made
# depend on the kind of model (MEMBER_FAMILIES), so there is one such rule per kind.
for family, kind in MEMBER_FAMILIES.items():

    rule:
        name:
            f"ensembles_{family}"
        input:
            unpack(data_input),
            checkpoint=checkpoint_file("{model}"),
        output:
            members=[
                directory(members_dir("{model}", bsr_run("{fmt}", s)))
                for s in kind.seeds
            ],
            preds=[preds_file("{model}", bsr_run("{fmt}", s)) for s in kind.seeds],
            rtn=(
                [directory(members_dir("{model}", rtn_run("{fmt}")))]
                if kind.rtn
                else []
            ),
            rtn_preds=[preds_file("{model}", rtn_run("{fmt}"))] if kind.rtn else [],
        log:
            work("logs/ensembles/{model}/{fmt}.log"),
        benchmark:
            work("benchmarks/ensembles/{model}/{fmt}.tsv")
        wildcard_constraints:
            model=kind.pattern,
        conda:
            ENV
        threads: 1
        params:
            **PREDICTION_PARAMS,
            members=kind.members,
            seeds=kind.seeds,
            settings=settings(PREDICT, QUANT),
        shell:
            "python -m lpe.stages.ensembles --checkpoint {input.checkpoint} --data {params.data:q}"
            " --format {wildcards.fmt} --members {params.members} --seeds {params.seeds}"
            " --members-out {output.members} --out {output.preds} --rtn-members-out {output.rtn}"
            " --rtn-out {output.rtn_preds}"
            " --settings {params.settings:q}"
            " --batch-size {params.batch_size} --workers {threads} --threads {threads}"
            " > {log} 2>&1"


rule predict_fp32:
    input:
        unpack(data_input),
        checkpoint=checkpoint_file("{model}"),
    output:
        preds_file("{model}", "fp32"),
    log:
        work("logs/predict/{model}/fp32.log"),
    benchmark:
        work("benchmarks/predict/{model}/fp32.tsv")
    conda:
        ENV
    threads: 1
    params:
        **PREDICTION_PARAMS,
        settings=settings(PREDICT),
    shell:
        "python -m lpe.stages.predict --checkpoint {input.checkpoint} --data {params.data:q}"
        " --settings {params.settings:q}"
        " --batch-size {params.batch_size} --workers {threads} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule baseline:
    input:
        unpack(data_input),
        unpack(baseline_choice_input),
        checkpoint=checkpoint_file("{model}"),
    output:
        choice=work("baselines/{model}/{baseline}-choice.json"),
        preds=[preds_file("{model}", f"{{baseline}}-seed{s}") for s in BASELINE_SEEDS],
    log:
        work("logs/baselines/{model}/{baseline}.log"),
    benchmark:
        work("benchmarks/baselines/{model}/{baseline}.tsv")
    wildcard_constraints:
        model=re.escape(BASELINE_MODEL),
        baseline="|".join(BASELINES),
    conda:
        ENV
    threads: 1
    params:
        **PREDICTION_PARAMS,
        settings=lambda w: settings(
            PREDICT,
            (
                [BASELINES[w.baseline].candidates]
                if BASELINES[w.baseline].candidates
                else []
            ),
            setting_file=baseline_choice_input(w).get("bsr_choice"),
        ),
        members=BASELINE_MEMBERS,
        seeds=BASELINE_SEEDS,
    shell:
        "python -m lpe.stages.baselines --checkpoint {input.checkpoint} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q} --method {wildcards.baseline}"
        " --choice-out {output.choice} --members {params.members} --seeds {params.seeds}"
        " --batch-size {params.batch_size} --threads {threads}"
        " --out {output.preds} > {log} 2>&1"
