"""LLaMA-3 on MMLU as 4-way multiple choice: the language-model part of Table 3 and Figure 7.

ASSUMED setup (docs/paper.md): k-shot prompts (k = 5) built from MMLU's dev split in the format of
Hendrycks et al., and the model's log-probabilities of the tokens " A", " B", " C", " D" at the
answer position, renormalised over the four, as the class log-probabilities. Token embeddings and
the output head stay FP32; every other weight matrix is quantized (the policy by role,
``lpe.formats.policy.policy_for``, as for a user's own model).

MMLU is read from a local copy in its original CSV layout (``lpe.data.mmlu``: the reader and the
prompts); the model and tokenizer are loaded by ``lpe.models.llm``.

Subcommands:

- ``download --name meta-llama/Meta-Llama-3-8B --cache DIR --out MODEL_DIR``: the model and its
  tokenizer through transformers (a gated model reads its token from ``HF_TOKEN``), saved to
  ``MODEL_DIR``; a copy already in ``DIR`` is used without network access.
- ``predict --model MODEL_DIR --mmlu ROOT --out PREDS.npz [--format int5 --method bsr --members
  20 --seed 0] [--dtype bfloat16]``: the predictions file of the FP32 model or of its RTN member
  (one: rounding to nearest is deterministic) or LPE-BSR members, which are made in memory and
  written into the one model in turn (no member files at this scale).

At 8B scale (the paper profile):
- ``--dtype bfloat16`` holds the model's weights in bf16 (16 GB instead of 32); the output head
  stays FP32 (it scores only the last position) and members are always rounded from the FP32
  masters, kept on the CPU, so a member is the same whatever ``--dtype``.
- The members are the library's (``lpe.evaluation.ensemble.LowPrecisionEnsemble``): rounded on
  the CPU from the masters and held as one shared base plus a bit per member and weight (about
  ``(b + M) / 8`` bytes per weight), each decoded on the model's device in the model's dtypes
  when its turn comes, so the GPU holds the model plus one member (16 GB more in bf16 at 8B).
- The forward keeps only the last position's logits and builds no KV cache.
- Each member's predictions are saved as it finishes (``PREDS.npz.members/``); a rerun after a
  timeout or a kill resumes from there, so it loses one member, not twenty. The folder records
  what made it (model, split, shots, format, seed, dtype) and is refused if any of it changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from tqdm import tqdm

from lpe.cli.flags import FORMAT_NAMES
from lpe.cli.jobs import from_cli
from lpe.core.artifacts import write_json, write_with
from lpe.core.jobs import Job, setting
from lpe.core.runtime import Inference
from lpe.data.mmlu import CHOICES, MMLUError, build_prompts
from lpe.evaluation import spine
from lpe.evaluation.ensemble import LowPrecisionEnsemble
from lpe.formats.number_formats import get_format
from lpe.formats.policy import policy_for
from lpe.members.files import quantize
from lpe.methods import rounding_run
from lpe.models.llm import load_model


def answer_token_ids(tokenizer) -> list[int]:
    """The token of " A", " B", " C", " D" (the last one when a letter takes several)."""
    return [tokenizer.encode(f" {c}", add_special_tokens=False)[-1] for c in CHOICES]


def answer_batches(tokenizer, prompts, batch_size: int = 4) -> list[dict]:
    """The prompts tokenized once, in batches of keyword inputs: left-padded (the answer position
    is the last one of every row), keeping only that position's logits (not (batch, length,
    128k)) and no KV cache."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return [
        {
            **tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True),
            "logits_to_keep": 1,
            "use_cache": False,
        }
        for i in range(0, len(prompts), batch_size)
    ]


def answer_log_probs(
    model, tokenizer, prompts, device, batch_size: int = 4, *, weights=None, batches=None
) -> torch.Tensor:
    """``(N, 4)`` log-probabilities of the four answers at the answer position; with
    ``weights`` (``lpe.evaluation.spine.member_weights``), of the model run with a member's
    weights (the evaluation spine's forward). ``batches``: the prompts already tokenized
    (:func:`answer_batches`), for a run that scores several members."""
    ids = answer_token_ids(tokenizer)
    if len(set(ids)) != 4:
        raise MMLUError(f"the tokenizer maps the answer letters to tokens {ids}, not 4 distinct")
    batches = answer_batches(tokenizer, prompts, batch_size) if batches is None else batches

    def answers(output) -> torch.Tensor:
        return torch.log_softmax(output.logits[:, -1, ids].float(), dim=-1)

    with spine.evaluating(model):
        return spine.forward_log_probs(model, batches, device, weights, read=answers)


def predict(args: MmluPredict) -> None:
    device = args.start()
    model, tokenizer = load_model(args.model, args.dtype, device)
    prompts, labels = build_prompts(args.mmlu, args.split, args.shots, args.limit)
    # the FP32 weights on the CPU, read again from the files when the model runs in another
    # dtype: members rounded from bf16-rounded weights would not be the FP32 model's members
    fp32 = model if args.dtype == "float32" else load_model(args.model)[0]
    masters = {k: v.detach().float().cpu() for k, v in fp32.state_dict().items()}  # never written
    del fp32
    policy = policy_for(model)  # by role: the embedding table and the output head stay FP32
    numel = sum(t.numel() for t in masters.values())
    if args.format is None:
        log_probs = answer_log_probs(model, tokenizer, prompts, device, args.batch_size)[None]
        bits, run = [32 * numel], {"method": "fp32", "bits": 0, "seed": 0}
    else:
        fmt = get_format(args.format)
        parts = MemberParts(Path(str(args.out) + ".members"), _run_record(args, len(prompts)))
        if args.method == "bsr":  # the library's ensemble, rounded from the FP32 masters
            ensemble = LowPrecisionEnsemble(
                model,
                fmt,
                args.members,
                args.seed,
                policy,
                progress="draw members",
                weights=masters,
            )
            drawn = ensemble.members()
        else:
            drawn = iter([quantize(masters, fmt, "rtn", policy=policy)])
        count = args.members if args.method == "bsr" else 1
        todo = ((k, member) for k, member in enumerate(drawn) if k not in parts)
        open_member = spine.open_member(model)  # on the model's device, in its dtypes

        batches = answer_batches(tokenizer, prompts, args.batch_size)  # once for every member

        def answer(weights) -> torch.Tensor:
            return answer_log_probs(
                model, tokenizer, prompts, device, args.batch_size, weights=weights, batches=batches
            )

        passes = spine.stream(
            model, todo, lambda km: open_member(km[1]), None, device, forward=answer
        )
        for done in tqdm(passes, desc=f"{args.method} members", mininterval=5):
            k, member = done.member
            parts.save(k, done.log_probs, member.bits)
        log_probs, bits = zip(*(parts.load(k) for k in range(count)), strict=True)
        log_probs, bits = torch.stack(log_probs), list(bits)
        run = {"method": rounding_run(args.method), "bits": fmt.code_bits, "seed": args.seed}
    meta = json.loads((Path(args.model) / "lpe_source.json").read_text())
    info = SimpleNamespace(backward_passes=0, model=meta["name"], optimizer="pretrained")
    from lpe.evaluation.predictions_file import write_predictions

    write_predictions(args.out, log_probs, labels, bits, info, run=run, params=numel)
    if args.format is not None:
        parts.remove()


def _run_record(args, prompts: int) -> dict:
    """What determines a member's predictions; saved parts of another run are not reused."""
    source = json.loads((Path(args.model) / "lpe_source.json").read_text())
    keys = ("split", "shots", "limit", "format", "method", "seed", "dtype")
    return {"model": source["sha256"], "prompts": prompts, **{k: getattr(args, k) for k in keys}}


class MemberParts:
    """Each finished member's ``(N, 4)`` log-probabilities and bits, saved atomically in
    ``folder`` so that an interrupted run resumes; ``record`` says what made them."""

    def __init__(self, folder: Path, record: dict) -> None:
        self.folder, self.record = folder, record
        manifest = folder / "run.json"
        if manifest.is_file():
            saved = json.loads(manifest.read_text())
            if saved != record:
                raise MMLUError(
                    f"{folder} holds members of another run ({saved}, not {record}): "
                    "delete it and rerun"
                )
            print(f"resuming: {len(list(folder.glob('member*.npz')))} members saved in {folder}")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            write_json(manifest, record)

    def _path(self, k: int) -> Path:
        return self.folder / f"member{k:03d}.npz"

    def __contains__(self, k: int) -> bool:
        return self._path(k).is_file()

    def save(self, k: int, log_probs: torch.Tensor, bits: int) -> None:
        arrays = {"log_probs": log_probs.numpy(), "bits": np.asarray(bits)}
        write_with(self._path(k), lambda tmp: np.savez(tmp, **arrays), suffix=".npz")

    def load(self, k: int) -> tuple[torch.Tensor, int]:
        with np.load(self._path(k)) as f:
            return torch.from_numpy(f["log_probs"]), int(f["bits"])

    def remove(self) -> None:
        shutil.rmtree(self.folder)


def download(name: str, cache, out) -> None:
    """Save model ``name`` and its tokenizer to ``out`` (from ``cache`` when it is there)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = Path(cache).expanduser() / name.replace("/", "--")
    if not (cached / "lpe_source.json").is_file():
        try:
            model = AutoModelForCausalLM.from_pretrained(name, token=os.environ.get("HF_TOKEN"))
            tokenizer = AutoTokenizer.from_pretrained(name, token=os.environ.get("HF_TOKEN"))
        except Exception as err:
            raise SystemExit(
                f"error: cannot download {name} ({type(err).__name__}: {err}). Offline, or a "
                "gated model without HF_TOKEN? On a machine with network and access run "
                f"`python -m lpe.stages.mmlu download --name {name} --cache DIR --out /tmp/m` "
                "and copy "
                f"DIR/{cached.name} to {cached}"
            ) from err
        tmp = cached.with_name(cached.name + ".tmp")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        digest = hashlib.sha256()
        for path in sorted(tmp.glob("*.safetensors")):  # streamed: shards are gigabytes
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):
                    digest.update(block)
        source = {"name": name, "source": f"transformers:{name}", "sha256": digest.hexdigest()}
        (tmp / "lpe_source.json").write_text(json.dumps(source, indent=2) + "\n")
        tmp.replace(cached)
    if Path(out).exists():
        shutil.rmtree(out)
    shutil.copytree(cached, out)


@dataclass(frozen=True, kw_only=True)
class MmluDownload(Job):
    """``download``: the model and its tokenizer, via transformers and a cache."""

    name: str = setting(help="the model's Hugging Face name")
    cache: str = setting("~/.cache/lpe", "folder of downloaded models", config="checkpoints.cache")
    out: str = setting(help="the model folder written")


@dataclass(frozen=True, kw_only=True)
class MmluPredict(Inference):
    """``predict``: MMLU predictions of the model or of its members."""

    model: str = setting(help="a folder written by `download`")
    mmlu: str = setting("", "MMLU root (dev/, test/, val/)", config="llm.mmlu")
    split: str = setting(
        "test", "the questions evaluated", config="llm.split", choices=("test", "val")
    )
    shots: int = setting(5, "examples from the dev split before each question", config="llm.shots")
    limit: int | None = setting(None, "a fixed random subset of this many questions")
    # the run's members: the workflow's wildcards (job.*), none for the FP32 model
    format: str | None = setting(
        None,
        f"the members' number format: {FORMAT_NAMES} (omit for the FP32 model)",
        config="job.format",
    )
    method: str | None = setting("bsr", "the members' rounding (rtn or bsr)", config="job.method")
    members: int = setting(20, "LPE-BSR members", config="large.ensemble_size")
    seed: int | None = setting(0, "the ensemble seed", config="job.seed")
    batch_size: int = setting(4, "prompts per forward pass", config="llm.batch_size")
    out: str = setting(help="the predictions file")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mmlu:
            raise ValueError("--mmlu (llm.mmlu): give the MMLU root")
        if self.shots < 0 or self.members < 1:
            raise ValueError("--shots must be >= 0 and --members >= 1")
        if self.format is not None and self.method not in ("rtn", "bsr"):
            raise ValueError(f"--method must be rtn or bsr, got {self.method!r}")


class MmluJob:
    """The stage's two subcommands, each its own job (``lpe.cli.jobs.from_cli`` reads the first
    argument)."""

    commands = {"download": MmluDownload, "predict": MmluPredict}


def run(job: MmluDownload | MmluPredict) -> None:
    """Download the model, or write the predictions file."""
    if isinstance(job, MmluDownload):
        download(job.name, job.cache, job.out)
        return
    predict(job)
    print(f"wrote {job.out}")


def main(argv: list[str] | None = None) -> None:
    run(from_cli(MmluJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
