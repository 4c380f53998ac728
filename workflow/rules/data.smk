rule data:
    output:
        DATA,
    log:
        work("logs/data.log"),
    conda:
        ENV
    threads: 1
    params:
        dataset={
            k: config["dataset"][k] for k in ("name", "seed", "train", "val", "test")
        },
    shell:
        "python -m lpe.stages.data --dataset {params.dataset[name]} --train {params.dataset[train]}"
        " --val {params.dataset[val]} --test {params.dataset[test]}"
        " --seed {params.dataset[seed]} --out {output} > {log} 2>&1"
