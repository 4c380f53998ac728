"""The report stages: one module per paper artifact or family of them (tables, figures,
claims, the HTML pages), run as ``python -m lpe.reports.<name>``; they read score files, never
models. ``tabulate`` and ``plotting`` are what they share.
"""
