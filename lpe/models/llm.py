"""Hugging Face causal language models as the MMLU stage runs them (``lpe.stages.mmlu``)."""

from __future__ import annotations

import torch

from lpe.core.runtime import DTYPES


def load_model(folder, dtype: str = "float32", device=None):
    """The model with its weights in ``dtype`` (its output head in FP32), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype])
    head = model.get_output_embeddings()
    if DTYPES[dtype] != torch.float32 and head is not model.get_input_embeddings():
        # FP32 answer logits: the head (one position per prompt) runs on FP32 inputs
        head.float().register_forward_pre_hook(lambda _, args: (args[0].float(), *args[1:]))
    return model.to(device or "cpu"), AutoTokenizer.from_pretrained(folder)
