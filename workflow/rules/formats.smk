# LPE-BSR across number systems (the paper's outlook): the members are made by the ensembles rule
# of lpe.smk, one job per model x format; these rules score them and draw the table and figure.


# FP32, RTN and LPE-BSR of formats.models x formats.names (Table 1's INT-b files where a format
# is one of quant.formats: the same jobs): predictions files and member folders (no FP32 member)
FORMAT_RUNS = runs(FORMATS["names"])
FORMAT_PREDICTIONS = [
    preds_file(m, run) for m in FORMATS["models"] for run in FORMAT_RUNS
]
FORMAT_TARGETS = [
    *[members_dir(m, run) for m in FORMATS["models"] for run in FORMAT_RUNS[1:]],
    *FORMAT_PREDICTIONS,
    *(
        [
            results("formats/scores.csv"),
            *tables("table_formats"),
            *figure_files("lpe_across_formats"),
            report_page("table_formats"),
        ]
        if FORMATS["models"]
        else []
    ),
]


use rule score_template as score_formats with:
    input:
        FORMAT_PREDICTIONS,
    output:
        results("formats/scores.csv"),
    log:
        work("logs/score_formats.log"),


rule table_formats:
    input:
        results("formats/scores.csv"),
    output:
        multiext(results("tables/table_formats"), ".csv", ".md", ".tex"),
        report(
            multiext(figures("lpe_across_formats"), ".png", ".pdf"),
            caption="../report/lpe_across_formats.rst",
            category="Number systems",
        ),
    log:
        work("logs/table_formats.log"),
    conda:
        ENV
    threads: 1
    params:
        table=lambda w, output: os.path.splitext(output[0])[0],
        figure=lambda w, output: os.path.splitext(output[3])[0],
    shell:
        "python -m lpe.reports.table_formats --scores {input} --out {params.table}"
        " --figure {params.figure} > {log} 2>&1"
