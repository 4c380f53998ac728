"""The report stages: one module per paper artifact or family of them (tables, figures,
claims, the HTML pages), run as ``python -m lpe.reports.<name>``; they read score files, never
models. ``tabulate`` and ``plotting`` are what they share.
"""

from lpe.core.numerics import pin_cpu_numerics

# This package holds programs only (``python -m lpe.reports.<name>``), never library code: every
# report stage computes on the suite's pinned CPU paths, set here before it imports torch.
pin_cpu_numerics()
