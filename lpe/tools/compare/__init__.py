"""The regeneration check, a package by concern: ``tolerances`` (modes, noise units, the report),
``text`` (text files), ``tables`` (CSV files), ``verdicts`` (verdict words in noise mode) and
``trees`` (the folders, the files' kinds and the command, ``python -m lpe.tools.compare``; its
docstring says what is compared and how)."""

from lpe.tools.compare.trees import compare_trees, main

__all__ = ["compare_trees", "main"]
