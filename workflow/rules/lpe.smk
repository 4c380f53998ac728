# Low precision members as files, and the predictions of every run.


# One job per model x number format: it writes the members of every seed (and the RTN member) and
# predicts them, in one process (lpe.stages.ensembles). The seeds, ensemble size and whether RTN is made
# depend on the kind of model (member_families), so there is one such rule per kind.
for family, kind in member_families().items():

    rule:
        name:
            f"ensembles_{family}"
        input:
            unpack(data_input),
            checkpoint=work("checkpoints/{model}.safetensors"),
        output:
            members=[
                directory(work(f"members/{{model}}/bsr-{{fmt}}-seed{s}"))
                for s in kind.seeds
            ],
            preds=[work(f"preds/{{model}}/bsr-{{fmt}}-seed{s}.npz") for s in kind.seeds],
            rtn=(
                [directory(work("members/{model}/rtn-{fmt}-seed0"))]
                if kind.rtn
                else []
            ),
            rtn_preds=([work("preds/{model}/rtn-{fmt}-seed0.npz")] if kind.rtn else []),
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
            data=DATA,
            members=kind.members,
            seeds=kind.seeds,
            rtn=lambda w, output: (
                f"--rtn-members-out {output.rtn[0]} --rtn-out {output.rtn_preds[0]}"
                if output.rtn
                else ""
            ),
            settings=settings(CALIBRATED, QUANT),
            split=config["predict"]["split"],
            batch_size=config["predict"]["batch_size"],
        shell:
            "python -m lpe.stages.ensembles --checkpoint {input.checkpoint} --data {params.data:q}"
            " --format {wildcards.fmt} --members {params.members} --seeds {params.seeds}"
            " --members-out {output.members} --out {output.preds} {params.rtn}"
            " --settings {params.settings:q} --split {params.split}"
            " --batch-size {params.batch_size} --workers {threads} --threads {threads}"
            " > {log} 2>&1"


rule predict_fp32:
    input:
        unpack(data_input),
        checkpoint=work("checkpoints/{model}.safetensors"),
    output:
        work("preds/{model}/fp32.npz"),
    log:
        work("logs/predict/{model}/fp32.log"),
    benchmark:
        work("benchmarks/predict/{model}/fp32.tsv")
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=settings(CALIBRATED),
        split=config["predict"]["split"],
        batch_size=config["predict"]["batch_size"],
    shell:
        "python -m lpe.stages.predict --checkpoint {input.checkpoint} --data {params.data:q}"
        " --settings {params.settings:q} --split {params.split}"
        " --batch-size {params.batch_size} --workers {threads} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule baseline:
    input:
        unpack(data_input),
        unpack(baseline_choice_input),
        checkpoint=work("checkpoints/{model}.safetensors"),
    output:
        choice=work("baselines/{model}/{baseline}-choice.json"),
        preds=[
            work(f"preds/{{model}}/{{baseline}}-seed{s}.npz")
            for s in seeds_of(BASELINE_MODEL)
        ],
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
        settings=lambda w: settings(
            CALIBRATED,
            [f"baselines.{BASELINES[w.baseline]}"] if BASELINES[w.baseline] else [],
            setting_file=baseline_choice_input(w).get("bsr_choice"),
        ),
        members=lambda w: ensemble_size(w.model),
        seeds=seeds_of(BASELINE_MODEL),
        split=config["predict"]["split"],
        batch_size=config["predict"]["batch_size"],
    shell:
        "python -m lpe.stages.baselines --checkpoint {input.checkpoint} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q} --method {wildcards.baseline}"
        " --choice-out {output.choice} --members {params.members} --seeds {params.seeds}"
        " --split {params.split} --batch-size {params.batch_size} --threads {threads}"
        " --out {output.preds} > {log} 2>&1"
