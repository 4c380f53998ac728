rule data:
    output:
        DATA,
    log:
        work("logs/data.log"),
    conda:
        ENV
    threads: 1
    params:
        settings=settings(
            [f"dataset.{k}" for k in ("name", "seed", "train", "val", "test")]
        ),
    shell:
        "python -m lpe.stages.data --settings {params.settings:q} --out {output} > {log} 2>&1"
