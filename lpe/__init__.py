"""Low precision ensembling (LPE-BSR) and the stages of its replication suite."""

from lpe.core.numerics import pin_cpu_numerics

# Before any submodule imports torch: every stage computes on the same CPU path (see numerics).
pin_cpu_numerics()
