# Low precision ensembling replication suite: the table of contents of the workflow.
# `snakemake --cores 2` regenerates the mini profile; another profile is a --configfile away.
import os


configfile: os.path.join(workflow.basedir, "config/mini.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/lpe.smk"
include: "workflow/rules/bma.smk"
include: "workflow/rules/fast.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
