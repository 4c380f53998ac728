# Low precision members as files, and the predictions of every run.


rule generate:
    input:
        work("checkpoints/{model}.safetensors"),
    output:
        directory(work("members/{model}/{method}-int{bits}-seed{seed}")),
    log:
        work("logs/generate/{model}/{method}-int{bits}-seed{seed}.log"),
    conda:
        ENV
    threads: 1
    params:
        members=lambda w: 1 if w.method == "rtn" else ensemble_size(w.model),
        per_tensor="" if config["quant"]["per_channel"] else "--per-tensor",
        exclude=shlex.join(config["quant"]["exclude"]),
        min_ndim=config["quant"]["min_ndim"],
    shell:
        "python -m lpe.generate --checkpoint {input} --method {wildcards.method}"
        " --bits {wildcards.bits} --seed {wildcards.seed} --members {params.members}"
        " {params.per_tensor} --exclude {params.exclude} --min-ndim {params.min_ndim}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule predict_fp32:
    input:
        unpack(data_input),
        checkpoint=work("checkpoints/{model}.safetensors"),
    output:
        work("preds/{model}/fp32.npz"),
    log:
        work("logs/predict/{model}/fp32.log"),
    benchmark:
        work("benchmarks/predict/{model}/fp32.tsv")
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        dtype=predict_flags,
        split=config["predict"]["split"],
        batch_size=config["predict"]["batch_size"],
    shell:
        "python -m lpe.predict --checkpoint {input.checkpoint} --data {params.data}"
        " --split {params.split} --batch-size {params.batch_size} --threads {threads}"
        "{params.dtype} --out {output} > {log} 2>&1"


rule predict_members:
    input:
        unpack(data_input),
        checkpoint=work("checkpoints/{model}.safetensors"),
        members=work("members/{model}/{method}-int{bits}-seed{seed}"),
    output:
        work("preds/{model}/{method}-int{bits}-seed{seed}.npz"),
    log:
        work("logs/predict/{model}/{method}-int{bits}-seed{seed}.log"),
    benchmark:
        work("benchmarks/predict/{model}/{method}-int{bits}-seed{seed}.tsv")
    conda:
        ENV
    threads: 1
    params:
        data=DATA,
        dtype=predict_flags,
        split=config["predict"]["split"],
        batch_size=config["predict"]["batch_size"],
    shell:
        "python -m lpe.predict --checkpoint {input.checkpoint} --data {params.data}"
        " --members {input.members} --split {params.split}"
        " --batch-size {params.batch_size} --threads {threads}{params.dtype}"
        " --out {output} > {log} 2>&1"


rule select_baseline:
    input:
        unpack(data_input),
        checkpoint=work("checkpoints/{model}.safetensors"),
    output:
        work("baselines/{model}/{baseline}-choice.json"),
    log:
        work("logs/baselines/{model}/{baseline}-choice.log"),
    benchmark:
        work("benchmarks/baselines/{model}/{baseline}-choice.tsv")
    wildcard_constraints:
        baseline="gaussian|dropout",
    conda:
        ENV
    threads: 1
    params:
        data=data_flags,
        dtype=DTYPE_FLAG,
        candidates=lambda w: config["baselines"][
            "gaussian_scales" if w.baseline == "gaussian" else "dropout_rates"
        ],
        members=lambda w: ensemble_size(w.model),
        seed=lambda w: seeds_of(w.model)[0],
        batch_size=config["predict"]["batch_size"],
    shell:
        "python -m lpe.baselines --checkpoint {input.checkpoint} {params.data}"
        " --method {wildcards.baseline} --candidates {params.candidates}"
        " --members {params.members} --seed {params.seed}"
        " --batch-size {params.batch_size} --threads {threads}{params.dtype} --select-out {output}"
        " > {log} 2>&1"


rule predict_baseline:
    input:
        unpack(data_input),
        checkpoint=work("checkpoints/{model}.safetensors"),
        choice=work("baselines/{model}/{baseline}-choice.json"),
    output:
        work("preds/{model}/{baseline}-seed{seed}.npz"),
    log:
        work("logs/predict/{model}/{baseline}-seed{seed}.log"),
    benchmark:
        work("benchmarks/predict/{model}/{baseline}-seed{seed}.tsv")
    wildcard_constraints:
        baseline="gaussian|dropout",
    conda:
        ENV
    threads: 1
    params:
        data=data_flags,
        dtype=DTYPE_FLAG,
        members=lambda w: ensemble_size(w.model),
        split=config["predict"]["split"],
        batch_size=config["predict"]["batch_size"],
    shell:
        "python -m lpe.baselines --checkpoint {input.checkpoint} {params.data}"
        " --method {wildcards.baseline} --setting-file {input.choice}"
        " --members {params.members} --seed {wildcards.seed} --split {params.split}"
        " --batch-size {params.batch_size} --threads {threads}{params.dtype} --out {output} > {log} 2>&1"
