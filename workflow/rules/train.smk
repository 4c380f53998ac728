# Table 1's models, trained from scratch (the mini profile)
rule train:
    input:
        data=DATA,
    output:
        best=checkpoint_file("{model}"),
        last=work("checkpoints/last/{model}.safetensors"),
    log:
        work("logs/train/{model}.log"),
    benchmark:
        work("benchmarks/train/{model}.tsv")
    wildcard_constraints:
        model=TRAINED,
    # the longest jobs, each at the head of a chain: scheduled first so that the 2 cores stay busy
    priority: 10
    conda:
        ENV
    threads: 1
    params:
        settings=lambda w: train_settings(w.model),
    shell:
        "python -m lpe.stages.train --data {input.data} --model {wildcards.model}"
        " --settings {params.settings:q}"
        " --threads {threads} --out {output.best} --last-out {output.last} > {log} 2>&1"


# train_noise: a Table 1 model trained again with another seed (its spread over training seeds)
use rule train as train_seed with:
    output:
        best=checkpoint_file("{model}-trainseed{seed}"),
        last=work("checkpoints/last/{model}-trainseed{seed}.safetensors"),
    log:
        work("logs/train/{model}-trainseed{seed}.log"),
    benchmark:
        work("benchmarks/train/{model}-trainseed{seed}.tsv")
    wildcard_constraints:
        model=TRAINED,
        seed=r"\d+",
    priority: 0
    params:
        settings=lambda w: train_settings(w.model, seed=int(w.seed)),
