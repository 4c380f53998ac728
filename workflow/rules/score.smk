# Scoring predictions: one job shape for every score table.


# The scoring job (lpe.stages.score): each score table's rule is
# `use rule score_template as score_<table> with:` its predictions, its CSV and its log. The
# template itself makes no file (its output's wildcard matches nothing).
rule score_template:
    input:
        [],
    output:
        work("score_template/{never}.csv"),
    log:
        work("logs/score_template/{never}.log"),
    wildcard_constraints:
        never="^$",
    conda:
        ENV
    threads: 1
    shell:
        "python -m lpe.stages.score --preds {input:q} --out {output:q} > {log:q} 2>&1"
