# Fast ensembles as member sources, each with and without LPE-BSR: Figures 4, 5, 9 and Table 5.


# Figures 5 and 9 (the methods each shows: lpe.reports.fast.FIGURES)
FAST_FIGURES = ["fig5_fast_sse_csgld", "fig9_fast_sse_de_multiivon"]
# run 1 of DE and MultiIVON: the SGD and IVON runs of Figure 2
FAST_REUSE = {
    "de": {"reuse": checkpoint_file(f"{BMA_MODEL}-sgd")},
    "multiivon": {
        "reuse": checkpoint_file(f"{BMA_MODEL}-ivon"),
        "reuse_posterior": posterior_file(f"{BMA_MODEL}-ivon"),
    },
}
# Figures 5, 9 and Table 5's predictions: each method's FP32 and LPE-BSR files
FAST_PREDICTIONS = [
    *[preds_file(f"fast/{method}", "fp32") for method in FAST_ALONE],
    *[
        path
        for method in FAST_METHODS
        for path in (
            preds_file(f"fast/{method}", "fp32"),
            *[
                preds_file(f"fast/{method}", bsr_run(FAST_FORMAT, s))
                for s in FAST["seeds"]
            ],
        )
    ],
]
# MAP and LPE-BSR of Table 5: the SGD solution of Figure 2 and its LPE-BSR ensembles
TABLE5_PREDICTIONS = [
    preds_file(f"{BMA_MODEL}-sgd", "fp32"),
    *[preds_file(f"{BMA_MODEL}-sgd", bsr_run(FAST_FORMAT, s)) for s in FAST["seeds"]],
]
FAST_TARGETS = [
    *FAST_PREDICTIONS,
    FAST_LANDSCAPE,
    results("fast/scores.csv"),
    *tables("table5"),
    *[path for name in FAST_FIGURES for path in figure_files(name)],
]


rule fast_train:
    input:
        unpack(lambda w: {**FAST_REUSE.get(w.fast, {}), **data_input(w)}),
        checkpoint=checkpoint_file(BMA_MODEL),
    output:
        directory(work("fast/{fast}")),
    log:
        work("logs/fast/{fast}.log"),
    benchmark:
        work("benchmarks/fast/{fast}.tsv")
    wildcard_constraints:
        fast="|".join(FAST_SOURCES),
    priority: 5  # long fine-tuning chains: started before short report jobs
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=lambda w: settings(
            FINETUNING,
            ["fast.runs", *([f"fast.{w.fast}"] if w.fast in FAST else [])],
            resume=resume_file(f"fast-{w.fast}"),
            reuse=FAST_REUSE.get(w.fast, {}).get("reuse"),
            reuse_posterior=FAST_REUSE.get(w.fast, {}).get("reuse_posterior"),
        ),
    shell:
        "python -m lpe.stages.fast_train --method {wildcards.fast} --checkpoint {input.checkpoint}"
        " --data {params.data:q} --workers {threads} --settings {params.settings:q}"
        " --threads {threads} --out {output} > {log} 2>&1"


# One job per method: the FP32 predictions of its sources and its LPE-BSR runs of every seed.
rule fast_predict:
    input:
        unpack(data_input),
        sources=work("fast/{fast}"),
    output:
        fp32=preds_file("fast/{fast}", "fp32"),
        members=[
            directory(members_dir("fast/{fast}", bsr_run(FAST_FORMAT, s)))
            for s in FAST["seeds"]
        ],
        preds=[
            preds_file("fast/{fast}", bsr_run(FAST_FORMAT, s)) for s in FAST["seeds"]
        ],
    log:
        work("logs/predict/fast/{fast}.log"),
    benchmark:
        work("benchmarks/predict/fast/{fast}.tsv")
    wildcard_constraints:
        fast="|".join(FAST_METHODS),
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=settings(PREDICT, QUANT),
        fmt=FAST_FORMAT,
        copies=FAST["copies"],
        seeds=FAST["seeds"],
    shell:
        "python -m lpe.stages.fast_predict --sources {input.sources} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q}"
        " --format {params.fmt} --copies {params.copies} --seeds {params.seeds}"
        " --threads {threads}"
        " --members-out {output.members} --out {output.preds}"
        " --fp32-out {output.fp32}"
        " > {log} 2>&1"


# The fast sources without LPE-BSR runs: BatchEnsemble (its members share weights; not part of
# the paper's design)
rule fast_predict_fp32:
    input:
        unpack(data_input),
        sources=work("fast/{fast}"),
    output:
        preds_file("fast/{fast}", "fp32"),
    log:
        work("logs/predict/fast/{fast}/fp32.log"),
    benchmark:
        work("benchmarks/predict/fast/{fast}/fp32.tsv")
    wildcard_constraints:
        fast="|".join(FAST_ALONE),
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        settings=settings(PREDICT, QUANT),
    shell:
        "python -m lpe.stages.fast_predict --sources {input.sources} --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q}"
        " --threads {threads}"
        " --out {output} > {log} 2>&1"


rule landscape_fast:
    input:
        unpack(data_input),
        sources=work("fast/sse"),
        members=members_dir("fast/sse", bsr_run("{fmt}", "{seed}")),
    output:
        landscape_file("fast-sse", "{fmt}", "{seed}"),
    log:
        work("logs/landscape/fast-sse-{fmt}-seed{seed}.log"),
    benchmark:
        work("benchmarks/landscape/fast-sse-{fmt}-seed{seed}.tsv")
    conda:
        ENV
    threads: 1
    params:
        **LANDSCAPE_PARAMS,
    shell:
        "python -m lpe.stages.landscape --checkpoint {input.sources}/source00.safetensors"
        " --second {input.sources}/source01.safetensors"
        " --member {input.members}/source00 --data {params.data:q}"
        " --workers {threads} --settings {params.settings:q}"
        " --threads {threads} --out {output} > {log} 2>&1"


use rule score_template as score_fast with:
    input:
        FAST_PREDICTIONS + TABLE5_PREDICTIONS,
    output:
        results("fast/scores.csv"),
    log:
        work("logs/score_fast.log"),


rule figures_fast:
    input:
        scores=results("fast/scores.csv"),
        checkpoint=checkpoint_file(BMA_MODEL),
    output:
        report(
            multiext(figures("fig5_fast_sse_csgld"), ".png", ".pdf"),
            caption="../report/fig5.rst",
            category="Fast ensembles",
        ),
        report(
            multiext(figures("fig9_fast_sse_de_multiivon"), ".png", ".pdf"),
            caption="../report/fig9.rst",
            category="Fast ensembles",
        ),
    log:
        work("logs/figures_fast.log"),
    conda:
        ENV
    threads: 1
    params:
        fmt=FAST_FORMAT,
        out_dir=lambda w, output: os.path.dirname(output[0]) + "/",
    shell:
        "python -m lpe.reports.fast figures --scores {input.scores} --format {params.fmt}"
        " --pretrained {input.checkpoint} --out-dir {params.out_dir} > {log} 2>&1"


rule table5:
    input:
        results("fast/scores.csv"),
    output:
        multiext(results("tables/table5"), ".csv", ".md", ".tex"),
    log:
        work("logs/table5.log"),
    conda:
        ENV
    threads: 1
    params:
        fmt=FAST_FORMAT,
        runs=FAST["runs"],
        sizes=FAST["table5_sizes"],
        prefix=lambda w, output: os.path.splitext(output[0])[0],
    shell:
        "python -m lpe.reports.fast table5 --scores {input} --format {params.fmt}"
        " --runs {params.runs} --sizes {params.sizes} --out {params.prefix} > {log} 2>&1"
