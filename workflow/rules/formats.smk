# LPE-BSR across number systems (the paper's outlook): the members are made by the ensembles rule
# of lpe.smk, one job per model x format; these rules score them and draw the table and figure.


rule score_formats:
    input:
        format_predictions(),
    output:
        results("formats/scores.csv"),
    log:
        work("logs/score_formats.log"),
    conda:
        ENV
    threads: 1
    shell:
        "python -m lpe.stages.score --preds {input} --out {output} > {log} 2>&1"


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
