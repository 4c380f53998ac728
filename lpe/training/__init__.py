"""Training: the MAP training loop and fine-tuning with the sources' optimizers. Imports the
layers below it.
"""
