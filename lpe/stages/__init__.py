"""The workflow's stages: one module per job kind, run as ``python -m lpe.stages.<name>``.
A stage parses its arguments and calls the library layers; no stage imports another.
"""

from lpe.core.numerics import pin_cpu_numerics

# This package holds programs only (``python -m lpe.stages.<name>``), never library code: every
# stage computes on the suite's pinned CPU paths, set here before it imports torch.
pin_cpu_numerics()
