"""Stand-ins and runners shared by the tests: data sizes, the stages run as a test runs them, the
workflow's command, a generated image folder, fake MMLU rows, a tiny random Llama.

Imported as ``from helpers import ...`` (pytest puts this folder on ``sys.path``); no test module
imports another.
"""

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import lpe.stages.predict
from lpe.stages.fast_predict import read_sources
from lpe.stages.fast_train import main as fast_train
from lpe.stages.generate import main as generate

ROOT = Path(__file__).resolve().parents[1]

# The data sizes of the ``data`` fixture (tests/conftest.py): a module's ``SIZES``, SMALL if none
SMALL = {"train": 20, "val": 10, "test": 30, "seed": 0}
TRAINING = {"train": 64, "val": 16, "test": 16, "seed": 0}  # batch 16 -> 4 steps per epoch


def run_generate(checkpoint, out, *args):
    generate(["--checkpoint", str(checkpoint), "--out", str(out), *map(str, args)])


def run_predict(checkpoint, data, out, *args):
    lpe.stages.predict.main(["--checkpoint", str(checkpoint), "--data", str(data),
                             "--out", str(out), "--device", "cpu", *map(str, args)])  # fmt: skip


# The fast stage on TRAINING data: a run is 2 epochs x 4 steps; the checkpoint fixture's
# pre-training counts PRETRAIN backward passes
FAST_RUN = 2 * 4
PRETRAIN = 7
FAST_COMMON = ["--device", "cpu", "--epochs", "2", "--batch-size", "16"]


def train_fast(checkpoint, data, out, method, *args):
    fast_train(["--method", method, "--checkpoint", str(checkpoint), "--data", str(data),
          "--out", str(out), *FAST_COMMON, *map(str, args)])  # fmt: skip
    return read_sources(out)


def budgets(manifest):
    """Each source's backward passes beyond the starting checkpoint's."""
    return [s["backward_passes"] - PRETRAIN for s in manifest["sources"]]


# The workflow as the end-to-end tests run it: this interpreter's snakemake, whose jobs' `python`
# is this one (its venv), activated or not
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
ENV = {
    **os.environ,
    "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
}


def image_folder(root, classes, per_class=2, size=40):
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i}.png")
    return root


ROWS = [
    ["What is 1 + 1?", "1", "2", "3", "4", "B"],
    ["What is 2 + 2?", "4", "5", "6", "7", "A"],
    ["What is 3 + 3?", "5", "7", "6", "9", "C"],
    ["What is 4 + 4?", "2", "4", "6", "8", "D"],
]


def write_mmlu(root, subjects=("elementary_mathematics", "abstract_algebra")):
    for split, rows in (("dev", ROWS), ("test", ROWS[:3])):
        (root / split).mkdir(parents=True, exist_ok=True)
        for subject in subjects:
            with (root / split / f"{subject}_{split}.csv").open("w", newline="") as f:
                csv.writer(f).writerows(rows)
    return root


def make_tiny_llama(folder, name="tiny/llama"):
    """A randomly initialised 2-layer Llama and a byte-level BPE tokenizer trained here, saved
    as the download stage saves a model (with its ``lpe_source.json``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"])
    text = [" ".join(r) + " Answer: A B C D" for r in ROWS] * 20
    tok.train_from_iterator(text, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")  # fmt: skip
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=2048)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "lpe_source.json").write_text(json.dumps({"name": name, "sha256": ""}))
    return folder


def schema_default(path: str):
    """The config schema's default of the key at ``path`` (``"bma.sgd.lr"``)."""
    from lpe.tools.config import load_schema

    node = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    for part in path.split("."):
        node = node["properties"][part]
    return node["default"]
