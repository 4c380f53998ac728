# Scores, tables, figures and the claims report: read predictions only, never retrain.

# The Markdown results shown as pages of the HTML report: source, title, category, caption
REPORT_PAGES = yaml.safe_load(
    Path(workflow.source_path("../report/pages.yaml")).read_text()
)


# Table 1, its figures and claims report, Table 6, Figure 1 (mini: a sketch drawn on the mini
# data) and the report's pages
REPORT_TARGETS = [
    results("scores.csv"),
    *tables("table1"),
    *figure_files("nll_vs_ensemble_size"),
    *figure_files("nll_vs_inference_time"),
    results("claims.md"),
    results("baselines/scores.csv"),
    *tables("table6"),
    *[report_page(page) for page in ("table1", "claims", "table5", "table6")],
    *(
        []
        if IMAGES
        else [
            *figure_files("fig1_concept"),
            results("fig1_concept.csv"),
        ]
    ),
]
# The Table 1 checkpoints trained here (mini), whose convergence gate is reported; the paper
# profile's are downloaded (no training curve)
TRAINED_CHECKPOINTS = [] if IMAGES else [checkpoint_file(m) for m in config["models"]]
# the files behind the convergence gate and claims 4-6 and 8
CLAIMS_INPUTS = {
    "checkpoints": TRAINED_CHECKPOINTS,
    "bma": results("bma/scores.csv"),
    "ivon": posterior_file(f"{BMA_MODEL}-ivon"),
    "baselines": results("baselines/scores.csv"),
    "choices": BASELINE_CHOICES,
    "fast": results("fast/scores.csv"),
    "retrained": RETRAINED_SCORES,
    "fast_checkpoints": [
        results(f"fast/checkpoints/{n}.csv") for n in FAST_CHECKPOINTS
    ],
    # the fast sources whose peak rate is chosen on validation (fast.<name>.lr)
    "sources": [work(f"fast/{m}") for m in FAST_METHODS if "lr" in FAST.get(m, {})],
    **({"formats": results("formats/scores.csv")} if FORMATS["models"] else {}),
    **({"choice": MODEL_CHOICE} if MODEL_CHOICE else {}),
}


use rule score_template as score with:
    input:
        TABLE1_PREDICTIONS,
    output:
        results("scores.csv"),
    log:
        work("logs/score.log"),


use rule score_template as score_retrained with:
    input:
        lambda w: RETRAINED_PREDICTIONS[w.name],
    output:
        results("train_noise/{name}/scores.csv"),
    log:
        work("logs/score_retrained/{name}.log"),
    wildcard_constraints:
        name="|".join(map(re.escape, RETRAINED)) or "^$",


use rule score_template as score_fast_checkpoint with:
    input:
        lambda w: FAST_CHECKPOINT_PREDICTIONS[w.name],
    output:
        results("fast/checkpoints/{name}.csv"),
    log:
        work("logs/score_fast_checkpoint/{name}.log"),
    wildcard_constraints:
        name="|".join(map(re.escape, FAST_CHECKPOINTS)) or "^$",


rule table1:
    input:
        scores=results("scores.csv"),
        checkpoints=TRAINED_CHECKPOINTS,
    output:
        multiext(results("tables/table1"), ".csv", ".md", ".tex"),
    log:
        work("logs/table1.log"),
    conda:
        ENV
    threads: 1
    params:
        prefix=lambda w, output: os.path.splitext(output[0])[0],
    shell:
        "python -m lpe.reports.table1 --scores {input.scores} --checkpoints {input.checkpoints}"
        " --out {params.prefix} > {log} 2>&1"


# Table 1's figures, one rule each from one template (lpe.reports.figures, its --layout)
rule figure_nll_vs_ensemble_size:
    input:
        results("scores.csv"),
    output:
        report(
            multiext(figures("nll_vs_ensemble_size"), ".png", ".pdf"),
            caption="../report/nll_vs_ensemble_size.rst",
            category="Table 1",
        ),
    log:
        work("logs/figure_nll_vs_ensemble_size.log"),
    conda:
        ENV
    threads: 1
    params:
        layout="table1",
        prefix=lambda w, output: os.path.splitext(output[0])[0],
    shell:
        "python -m lpe.reports.figures --scores {input} --layout {params.layout}"
        " --out {params.prefix} > {log} 2>&1"


use rule figure_nll_vs_ensemble_size as figure_nll_vs_inference_time with:
    output:
        report(
            multiext(figures("nll_vs_inference_time"), ".png", ".pdf"),
            caption="../report/nll_vs_inference_time.rst",
            category="Table 1",
        ),
    log:
        work("logs/figure_nll_vs_inference_time.log"),
    params:
        layout="inference",
        prefix=lambda w, output: os.path.splitext(output[0])[0],


rule claims:
    input:
        **CLAIMS_INPUTS,
        scores=results("scores.csv"),
    output:
        results("claims.md"),
    log:
        work("logs/claims.log"),
    conda:
        ENV
    threads: 1
    params:
        settings=settings(
            [],
            bma_format=BMA_FORMATS[0],
            fast_format=FAST_FORMAT,
            format_scores=results("formats/scores.csv") if FORMATS["models"] else None,
            model_choice=MODEL_CHOICE,
        ),
    shell:
        "python -m lpe.reports.claims --scores {input.scores} --settings {params.settings:q}"
        " --checkpoints {input.checkpoints} --bma-scores {input.bma}"
        " --ivon-posterior {input.ivon} --baseline-scores {input.baselines}"
        " --baseline-choices {input.choices} --fast-scores {input.fast}"
        " --fast-checkpoint-scores {input.fast_checkpoints}"
        " --retrained-scores {input.retrained} --fast-sources {input.sources}"
        " --out {output} > {log} 2>&1"


rule figure1:
    input:
        DATA,
    output:
        png=report(
            figures("fig1_concept.png"),
            caption="../report/fig1.rst",
            category="Table 1",
        ),
        pdf=figures("fig1_concept.pdf"),
        csv=results("fig1_concept.csv"),
    log:
        work("logs/figure1.log"),
    conda:
        ENV
    threads: 1
    params:
        cfg=config["figure1"],
        prefix=lambda w, output: os.path.splitext(output.png)[0],
    shell:
        "python -m lpe.reports.fig1 --data {input} --format {params.cfg[format]}"
        " --range {params.cfg[range]} --draws {params.cfg[draws]}"
        " --points {params.cfg[points]} --seed {params.cfg[seed]}"
        " --out {params.prefix} --csv {output.csv} > {log} 2>&1"


use rule score_template as score_baselines with:
    input:
        BASELINE_PREDICTIONS + [BASELINE_FP32],
    output:
        results("baselines/scores.csv"),
    log:
        work("logs/score_baselines.log"),


rule table6:
    input:
        scores=results("baselines/scores.csv"),
        preds=BASELINE_PREDICTIONS,
    output:
        multiext(results("tables/table6"), ".csv", ".md", ".tex"),
    log:
        work("logs/table6.log"),
    conda:
        ENV
    threads: 1
    params:
        prefix=lambda w, output: os.path.splitext(output[0])[0],
    shell:
        "python -m lpe.reports.table6 --scores {input.scores}"
        " --preds {input.preds} --out {params.prefix} > {log} 2>&1"


# A Markdown result (a table, the claims report) as an HTML page of the Snakemake report, which
# shows HTML but offers Markdown and CSV only for download.
rule report_page:
    input:
        lambda w: results(REPORT_PAGES[w.page]["source"]),
    output:
        report(
            results("report/{page}.html"),
            caption="../report/page.rst",
            category=lambda w: REPORT_PAGES[w.page]["category"],
        ),
    log:
        work("logs/report/{page}.log"),
    wildcard_constraints:
        page="|".join(REPORT_PAGES),
    conda:
        ENV
    threads: 1
    params:
        title=lambda w: REPORT_PAGES[w.page]["title"],
        caption=lambda w: REPORT_PAGES[w.page]["caption"],
    shell:
        "python -m lpe.reports.pages --md {input:q} --title {params.title:q} --out {output:q}"
        " > {log:q} 2>&1"
