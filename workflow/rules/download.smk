# The paper profile: pretrained checkpoints (download, cache) and the large models (Table 3, Figure 7).

# the keys the downloads and the MMLU predictions read (lpe.core.settings)
CACHE = ("checkpoints.cache",)
MMLU = (
    "llm.mmlu",
    "llm.split",
    "llm.shots",
    "llm.batch_size",
    "large.ensemble_size",
    "predict.dtype",
)

LLMS = {
    re.sub("[/]", "--", name): name for name in config["llm"]["models"]
}  # path-safe -> hub name
# Table 3 and Figure 7: FP32, RTN and LPE-BSR per seed of each large model and LLM
LARGE_RUNS = [
    "fp32",
    rtn_run(LARGE_FORMAT),
    *[bsr_run(LARGE_FORMAT, s) for s in LARGE["seeds"]],
]
LARGE_PREDICTIONS = [
    preds_file(m, n) for m in [*LARGE["models"], *LLMS] for n in LARGE_RUNS
]
LARGE_TARGETS = (
    [
        *[checkpoint_file(m) for m in LARGE["models"]],
        *[work(f"llm/{m}") for m in LLMS],
        *[members_dir(m, n) for m in LARGE["models"] for n in LARGE_RUNS[1:]],
        *LARGE_PREDICTIONS,
        results("large/scores.csv"),
        *tables("table3"),
        *figure_files("fig7_large_models"),
        report_page("table3"),
    ]
    if LARGE["models"] or LLMS
    else []
)


rule download_checkpoint:
    output:
        checkpoint_file("{model}"),
    log:
        work("logs/download/{model}.log"),
    wildcard_constraints:
        model=DOWNLOADED,
    conda:
        ENV
    threads: 1
    params:
        settings=settings(CACHE, openclip=None),
    shell:
        "python -m lpe.stages.download_checkpoint --name {wildcards.model:q}"
        " --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


# A CLIP tower as a zero-shot classifier: its own rule, so that a cluster profile can give it a
# GPU: the head encodes 1000 classes x 80 prompt templates with the OpenCLIP text tower, in
# batches (an hour or more on a few CPU threads; seconds to minutes on a GPU).
rule download_zeroshot:
    output:
        checkpoint_file("{model}"),
    log:
        work("logs/download/{model}.log"),
    wildcard_constraints:
        model=ZEROSHOT,
    conda:
        ENV
    threads: 1
    params:
        settings=lambda w: settings(CACHE, openclip=openclip_tower(w.model)),
    shell:
        "python -m lpe.stages.download_checkpoint --name {wildcards.model:q}"
        " --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule download_llm:
    output:
        directory(work("llm/{llm}")),
    log:
        work("logs/download/{llm}.log"),
    wildcard_constraints:
        llm="|".join(re.escape(m) for m in LLMS) or "^$",
    conda:
        ENV
    threads: 1
    params:
        name=lambda w: LLMS[w.llm],
        settings=settings(CACHE),
    shell:
        "python -m lpe.stages.mmlu download --name {params.name:q} --settings {params.settings:q}"
        " --out {output:q} > {log:q} 2>&1"


# An LLM's RTN or LPE-BSR members (the run names of paths.smk: method, format, seed), and the
# model itself (predict_llm_fp32: no members)
rule predict_llm:
    input:
        work("llm/{llm}"),
    output:
        preds_file("{llm}", run_name("{method}", "{seed}", "{fmt}")),
    log:
        work("logs/predict/{llm}/{method}-{fmt}-seed{seed}.log"),
    benchmark:
        work("benchmarks/predict/{llm}/{method}-{fmt}-seed{seed}.tsv")
    wildcard_constraints:
        llm="|".join(re.escape(m) for m in LLMS) or "^$",
        method="rtn|bsr",
        fmt="[a-z0-9_]+",
        seed=r"\d+",
    conda:
        ENV
    threads: 1
    params:
        settings=lambda w: settings(
            MMLU,
            method=w.method,
            format=w.fmt,
            seed=int(w.seed),
        ),
    shell:
        "python -m lpe.stages.mmlu predict --model {input:q}"
        " --settings {params.settings:q} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"


use rule predict_llm as predict_llm_fp32 with:
    output:
        preds_file("{llm}", "fp32"),
    log:
        work("logs/predict/{llm}/fp32.log"),
    benchmark:
        work("benchmarks/predict/{llm}/fp32.tsv")
    wildcard_constraints:
        llm="|".join(re.escape(m) for m in LLMS) or "^$",
    params:
        settings=settings(
            MMLU,
            method=None,
            format=None,
            seed=None,
        ),


use rule score_template as score_large with:
    input:
        LARGE_PREDICTIONS,
    output:
        results("large/scores.csv"),
    log:
        work("logs/score_large.log"),


rule table3:
    input:
        results("large/scores.csv"),
    output:
        multiext(results("tables/table3"), ".csv", ".md", ".tex"),
    log:
        work("logs/table3.log"),
    conda:
        ENV
    threads: 1
    params:
        prefix=lambda w, output: os.path.splitext(output[0])[0],
    shell:
        "python -m lpe.reports.table3 --scores {input} --out {params.prefix}"
        " > {log} 2>&1"


rule figure7:
    input:
        results("large/scores.csv"),
    output:
        report(
            multiext(figures("fig7_large_models"), ".png", ".pdf"),
            caption="../report/fig7.rst",
            category="Large models",
        ),
    log:
        work("logs/figure7.log"),
    conda:
        ENV
    threads: 1
    params:
        prefix=lambda w, output: os.path.splitext(output[0])[0],
    shell:
        "python -m lpe.reports.fig7 --scores {input} --out {params.prefix}"
        " > {log} 2>&1"
