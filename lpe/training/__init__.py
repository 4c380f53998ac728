"""Training: the one loop (``loop``, with the :class:`~lpe.training.loop.Method` interface every
optimizer implements), MAP training with AdamW (``pretraining``), fine-tuning with a registered
method and posterior files (``finetuning``), and what a fast source's trainer starts from and
writes (``sources``). The methods themselves are ``lpe.methods``, one module each, above this
layer. Imports the layers below it.
"""
