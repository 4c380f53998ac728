# LPE-BSR against Bayesian model averaging: fine-tuning runs, posterior draws, landscapes.


# Figures 3, 4 and 6: each landscape's source run, and its title
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
LANDSCAPE_FILES = {
    o: landscape_file(f"{BMA_MODEL}-{o}", BMA_FORMATS[0], config["landscape"]["seed"])
    for o in ("swag", "ivon")
}
# per fine-tuning run: the FP32 solution, LPE-BSR per precision x seed, BMA per seed (not SGD)
BMA_RUNS = {
    f"{BMA_MODEL}-{o}": [
        "fp32",
        *[bsr_run(fmt, s) for fmt in BMA_FORMATS for s in BMA_SEEDS],
        *([run_name("bma", s) for s in BMA_SEEDS] if o != "sgd" else []),
    ]
    for o in FINETUNED
}
BMA_PREDICTIONS = [preds_file(m, run) for m, names in BMA_RUNS.items() for run in names]
# Figures 2, 3, 6 and 8: solutions, posteriors, members, predictions, landscapes, scores,
# figures, and bma.model's rule (mini)
BMA_TARGETS = [
    *[checkpoint_file(f"{BMA_MODEL}-{o}") for o in FINETUNED],
    *[posterior_file(f"{BMA_MODEL}-{o}") for o in FINETUNED if o != "sgd"],
    *[
        members_dir(m, run)
        for m, names in BMA_RUNS.items()
        for run in names
        if run.startswith("bsr")
    ],
    *BMA_PREDICTIONS,
    *LANDSCAPE_FILES.values(),
    results("bma/scores.csv"),
    *figure_files("fig2_nll_vs_ensemble_size_bma"),
    *figure_files("fig8_nll_vs_memory_bma"),
    *[path for name in LANDSCAPE_FIGURES for path in figure_files(name)],
    *[results(f"landscapes/{name}.csv") for name in LANDSCAPE_FIGURES],
    *([MODEL_CHOICE] if MODEL_CHOICE else []),
]


# bma.model's rule, measured on validation (mini profile: the paper fixed its model); when the
# config's bma.model is not the rule's choice, the file and the claims report say so and the DAG
# goes on with the configured model.
rule select_bma_model:
    input:
        unpack(data_input),
        checkpoints=[checkpoint_file(m) for m in config["models"]],
    output:
        results("bma/model_choice.md"),
    log:
        work("logs/select_bma_model.log"),
    benchmark:
        work("benchmarks/select_bma_model.tsv")
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=settings(
            HOLDOUT,
            QUANT,
            ("lpe.ensemble_size", "lpe.seeds", "predict.batch_size", "bma.model"),
        ),
        fmt=FAST_FORMAT,
    shell:
        "python -m lpe.stages.select_model --checkpoints {input.checkpoints}"
        " --data {params.data:q} --workers {threads} --settings {params.settings:q}"
        " --format {params.fmt}"
        " --threads {threads}"
        " --out {output} > {log} 2>&1"


rule finetune:
    input:
        unpack(data_input),
        checkpoint=checkpoint_file("{model}"),
    output:
        checkpoint_file("{model}-sgd"),
    log:
        work("logs/finetune/{model}-sgd.log"),
    benchmark:
        work("benchmarks/finetune/{model}-sgd.tsv")
    wildcard_constraints:
        model=TRAINED,
    priority: 5  # long fine-tuning chains: started before short report jobs
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=lambda w: settings(FINETUNING, resume=resume_file(f"{w.model}-sgd.pt")),
    shell:
        "python -m lpe.stages.finetune --checkpoint {input.checkpoint} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q} --optimizer sgd --threads {threads}"
        " --out {output} > {log} 2>&1"


rule finetune_posterior:
    input:
        unpack(data_input),
        checkpoint=checkpoint_file("{model}"),
    output:
        solution=checkpoint_file("{model}-{optimizer}"),
        posterior=posterior_file("{model}-{optimizer}"),
    log:
        work("logs/finetune/{model}-{optimizer}.log"),
    benchmark:
        work("benchmarks/finetune/{model}-{optimizer}.tsv")
    wildcard_constraints:
        model=TRAINED,
        optimizer=POSTERIOR,
    priority: 5  # long fine-tuning chains: started before short report jobs
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=lambda w: settings(
            FINETUNING, resume=resume_file(f"{w.model}-{w.optimizer}.pt")
        ),
    shell:
        "python -m lpe.stages.finetune --checkpoint {input.checkpoint} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q} --optimizer {wildcards.optimizer}"
        " --threads {threads}"
        " --out {output.solution} --posterior {output.posterior} > {log} 2>&1"


rule predict_bma:
    input:
        unpack(data_input),
        checkpoint=checkpoint_file("{model}-{optimizer}"),
        posterior=posterior_file("{model}-{optimizer}"),
    output:
        [preds_file("{model}-{optimizer}", run_name("bma", s)) for s in BMA_SEEDS],
    log:
        work("logs/predict/{model}-{optimizer}/bma.log"),
    benchmark:
        work("benchmarks/predict/{model}-{optimizer}/bma.tsv")
    wildcard_constraints:
        model=TRAINED,
        optimizer=POSTERIOR,
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=settings(PREDICT, ("bma.ensemble_size", "bma.swag.scale", "bma.seeds")),
    shell:
        "python -m lpe.stages.bma --checkpoint {input.checkpoint} --posterior {input.posterior}"
        " --data {params.data:q} --workers {threads} --settings {params.settings:q}"
        " --threads {threads}"
        " --out {output} > {log} 2>&1"


rule landscape:
    input:
        unpack(data_input),
        checkpoint=checkpoint_file("{model}-{optimizer}"),
        posterior=posterior_file("{model}-{optimizer}"),
        members=members_dir("{model}-{optimizer}", bsr_run("{fmt}", "{seed}")),
    output:
        landscape_file("{model}-{optimizer}", "{fmt}", "{seed}"),
    log:
        work("logs/landscape/{model}-{optimizer}-{fmt}-seed{seed}.log"),
    benchmark:
        work("benchmarks/landscape/{model}-{optimizer}-{fmt}-seed{seed}.tsv")
    wildcard_constraints:
        model=TRAINED,
        optimizer=POSTERIOR,
    conda:
        ENV
    threads: 1
    params:
        **LANDSCAPE_PARAMS,
    shell:
        "python -m lpe.stages.landscape --checkpoint {input.checkpoint} --posterior {input.posterior}"
        " --member {input.members} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q}"
        " --seed {wildcards.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


use rule score_template as score_bma with:
    input:
        BMA_PREDICTIONS,
    output:
        results("bma/scores.csv"),
    log:
        work("logs/score_bma.log"),


rule figures_bma:
    input:
        results("bma/scores.csv"),
    output:
        report(
            multiext(figures("fig2_nll_vs_ensemble_size_bma"), ".png", ".pdf"),
            caption="../report/fig2.rst",
            category="BMA",
        ),
        report(
            multiext(figures("fig8_nll_vs_memory_bma"), ".png", ".pdf"),
            caption="../report/fig8.rst",
            category="BMA",
        ),
    log:
        work("logs/figures_bma.log"),
    conda:
        ENV
    threads: 1
    params:
        fmt=BMA_FORMATS[0],
        out_dir=lambda w, output: os.path.dirname(output[0]) + "/",
    shell:
        "python -m lpe.reports.bma_figures curves --scores {input} --format {params.fmt}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule figure_landscape:
    input:
        lambda w: (
            FAST_LANDSCAPE
            if LANDSCAPE_FIGURES[w.figure] == "sse"
            else LANDSCAPE_FILES[LANDSCAPE_FIGURES[w.figure]]
        ),
    output:
        png=report(
            figures("{figure}.png"),
            caption="../report/landscape.rst",
            category=lambda w: (
                "Fast ensembles" if LANDSCAPE_FIGURES[w.figure] == "sse" else "BMA"
            ),
        ),
        pdf=figures("{figure}.pdf"),
        csv=results("landscapes/{figure}.csv"),
    log:
        work("logs/{figure}.log"),
    wildcard_constraints:
        figure="|".join(LANDSCAPE_FIGURES),
    conda:
        ENV
    threads: 1
    params:
        prefix=lambda w, output: os.path.splitext(output.png)[0],
        title=lambda w: LANDSCAPE_TITLES[w.figure],
    shell:
        "python -m lpe.reports.bma_figures landscape --plane {input} --title {params.title:q}"
        " --out {params.prefix} --csv {output.csv} > {log} 2>&1"
