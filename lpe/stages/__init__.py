"""The workflow's stages: one module per job kind, run as ``python -m lpe.stages.<name>``.
A stage parses its arguments and calls the library layers; no stage imports another.
"""
