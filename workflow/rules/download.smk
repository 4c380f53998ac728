# The paper profile: pretrained checkpoints fetched through timm (or taken from the cache).


rule download_checkpoint:
    output:
        work("checkpoints/{model}.safetensors"),
    log:
        work("logs/download/{model}.log"),
    wildcard_constraints:
        model=TRAINED,
    conda:
        ENV
    threads: 1
    params:
        cache=config["checkpoints"]["cache"],
    shell:
        "python -m lpe.hub --name {wildcards.model} --cache {params.cache:q}"
        " --out {output} > {log} 2>&1"
