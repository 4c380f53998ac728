"""Training: the one loop (``loop``), the optimizers and methods it runs (``methods``), MAP
training (``pretraining``), fine-tuning (``finetuning``) and the fast sources' trainers (``fast``,
one module per source). Imports the layers below it.
"""
