# Low precision ensembling replication suite: the table of contents of the workflow.
# `snakemake --cores 2` regenerates the mini profile; another profile is a --configfile away.
import os


configfile: os.path.join(workflow.basedir, "config/mini.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/runs.smk"


if IMAGES:  # the paper profile: pretrained checkpoints, an image folder

    include: "workflow/rules/download.smk"

else:  # the mini profile: data made and models trained by the workflow

    include: "workflow/rules/data.smk"
    include: "workflow/rules/train.smk"


include: "workflow/rules/lpe.smk"
include: "workflow/rules/bma.smk"
include: "workflow/rules/fast.smk"
include: "workflow/rules/formats.smk"
include: "workflow/rules/report.smk"


# each rule file names its own targets; the paper profile adds Table 3 and Figure 7
rule all:
    default_target: True
    input:
        LPE_TARGETS,
        BMA_TARGETS,
        FAST_TARGETS,
        FORMAT_TARGETS,
        REPORT_TARGETS,
        LARGE_TARGETS if IMAGES else [],
