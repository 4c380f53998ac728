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
# predicts them, in one process (lpe.stages.ensembles). The seeds, ensemble size and whether RTN is
# made depend on the kind of model (MEMBER_FAMILIES): one rule per kind, the others as the first.
rule ensembles_pretrained:
    input:
        unpack(data_input),
        checkpoint=checkpoint_file("{model}"),
    output:
        **ensemble_outputs(MEMBER_FAMILIES["pretrained"]),
    log:
        work("logs/ensembles/{model}/{fmt}.log"),
    benchmark:
        work("benchmarks/ensembles/{model}/{fmt}.tsv")
    wildcard_constraints:
        model=MEMBER_FAMILIES["pretrained"].pattern,
    conda:
        ENV
    threads: 1
    params:
        **ensemble_params(MEMBER_FAMILIES["pretrained"]),
    shell:
        "python -m lpe.stages.ensembles --checkpoint {input.checkpoint} --data {params.data:q}"
        " --format {wildcards.fmt} --members {params.members} --seeds {params.seeds}"
        " --members-out {output.members} --out {output.preds} --rtn-members-out {output.rtn}"
        " --rtn-out {output.rtn_preds}"
        " --settings {params.settings:q}"
        " --workers {threads} --threads {threads}"
        " > {log} 2>&1"


use rule ensembles_pretrained as ensembles_large with:
    output:
        **ensemble_outputs(MEMBER_FAMILIES["large"]),
    wildcard_constraints:
        model=MEMBER_FAMILIES["large"].pattern,
    params:
        **ensemble_params(MEMBER_FAMILIES["large"]),


use rule ensembles_pretrained as ensembles_retrained with:
    output:
        **ensemble_outputs(MEMBER_FAMILIES["retrained"]),
    wildcard_constraints:
        model=MEMBER_FAMILIES["retrained"].pattern,
    params:
        **ensemble_params(MEMBER_FAMILIES["retrained"]),


use rule ensembles_pretrained as ensembles_finetuned with:
    output:
        **ensemble_outputs(MEMBER_FAMILIES["finetuned"]),
    wildcard_constraints:
        model=MEMBER_FAMILIES["finetuned"].pattern,
    params:
        **ensemble_params(MEMBER_FAMILIES["finetuned"]),


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
        data=DATA,
        settings=settings(PREDICT),
    shell:
        "python -m lpe.stages.predict --checkpoint {input.checkpoint} --data {params.data:q}"
        " --settings {params.settings:q}"
        " --workers {threads} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule baseline:
    input:
        unpack(data_input),
        unpack(baseline_choice_input),
        checkpoint=checkpoint_file("{model}"),
    output:
        choice=work("baselines/{model}/{baseline}-choice.json"),
        preds=[preds_file("{model}", run_name("{baseline}", s)) for s in BASELINE_SEEDS],
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
        data=DATA,
        # the method's candidates: the config list its registry line names
        settings=lambda w: settings(
            PREDICT,
            candidates=(
                lookup(config, BASELINES[w.baseline].candidates)
                if BASELINES[w.baseline].candidates
                else None
            ),
            setting_file=baseline_choice_input(w).get("bsr_choice"),
        ),
        members=BASELINE_MEMBERS,
        seeds=BASELINE_SEEDS,
    shell:
        "python -m lpe.stages.baselines --checkpoint {input.checkpoint} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q} --method {wildcards.baseline}"
        " --choice-out {output.choice} --members {params.members} --seeds {params.seeds}"
        " --threads {threads}"
        " --out {output.preds} > {log} 2>&1"
