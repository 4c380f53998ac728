"""Benchmark: evaluating a low precision ensemble, the suite's streaming path against a naive loop.

Prints three tables.

1. Throughput. An ensemble of M BSR members (default 10, INT-4) of the mini ViT-B analogue
   (``vit_mini_b``, seeded initialisation; speed does not depend on training) on the mini
   profile's test split (6000 MNIST-1D points), all from the FP32 weights in memory:
   - the naive loop: deep-copy the model, round its state dict with the torch expression
     (floor + rand + compare), load it, forward;
   - the suite, one member at a time: ``lpe.members.files.quantize`` (the counter-based kernel),
     ``Member.load_into`` the one model instance, forward
     (``lpe.evaluation.spine.evaluate``);
   - the suite with K members per batched call (``torch.func.functional_call`` under ``vmap``);
   and, in a second table, the member preparation alone (rounding and loading, no forward pass).
2. Peak memory. Each row is a fresh process evaluating timm's ``vit_base_patch16_224``
   (``pretrained=False``, 86 M params) on a batch of random 224 x 224 images: the FP32 model
   alone, then M INT-b members streamed from member files (as the workflow's predict stage does).
   Peak resident set size from ``getrusage``.

Usage: ``python benchmarks/ensemble_eval.py [--members 10] [--bits 4] [--repeats 2] [--out FILE]``
"""

from __future__ import annotations

import argparse
import copy
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import timm
import torch
from common import best_time, emit, machine_line

from lpe.data.datasets import build
from lpe.evaluation import spine
from lpe.evaluation.spine import predict_log_probs
from lpe.formats.number_formats import NumberFormat, int_format
from lpe.formats.policy import QuantPolicy
from lpe.formats.rounding import bsr_reference, format_scales
from lpe.members.files import Member, load_member, member_seed, quantize, save_member
from lpe.models.factory import count_params, create_model

CPU = torch.device("cpu")
IMAGE_BATCH = 16


def naive_member(model, fmt: NumberFormat, generator: torch.Generator, policy: QuantPolicy):
    """What one writes without the suite: a deep copy per member, rounded with torch ops."""
    member = copy.deepcopy(model)
    state = member.state_dict()
    for name, tensor in state.items():
        if policy.quantizes(name, tensor):
            scales = format_scales(fmt, tensor).reshape(-1, *[1] * (tensor.dim() - 1))
            codes = bsr_reference(tensor, scales, int(fmt.max_value), generator)
            state[name] = codes.float() * scales
    member.load_state_dict(state)
    return member


def naive_loop(model, fmt: NumberFormat, members: int, x, batch_size: int, forward: bool = True):
    generator, policy = torch.Generator().manual_seed(0), QuantPolicy()
    out = []
    for _ in range(members):
        member = naive_member(model, fmt, generator, policy)
        if forward:
            out.append(predict_log_probs(member, x, batch_size, CPU))
    return out


def suite(model, state, fmt: NumberFormat, members: int, x, batch_size: int, per_call: int):
    stream = (quantize(state, fmt, "bsr", member_seed(0, k)) for k in range(members))
    opened = spine.open_member(model)
    return spine.evaluate(model, stream, opened, x, batch_size, CPU, members_per_call=per_call)[0]


def suite_preparation(model, state, fmt: NumberFormat, members: int) -> None:
    for k in range(members):
        quantize(state, fmt, "bsr", member_seed(0, k)).load_into(model)


def throughput_table(args) -> list[str]:
    fmt = int_format(args.bits)
    x = build("mnist1d", train=10, val=10, test=6000, seed=0).x["test"]
    model = create_model("vit_mini_b", 10, (1, 1, 40), seed=0).eval()
    state = {n: t.clone() for n, t in model.state_dict().items()}
    batch = 1000
    naive = best_time(lambda: naive_loop(model, fmt, args.members, x, batch), args.repeats)
    rows = [("naive loop (deepcopy, torch rounding, load, forward)", naive)]
    for per_call in [k for k in (1, 2, 5, 10) if k <= args.members]:
        instance = create_model("vit_mini_b", 10, (1, 1, 40), seed=0)

        def run(instance=instance, per_call=per_call):
            return suite(instance, state, fmt, args.members, x, batch, per_call)

        name = "suite, one member at a time (load_into)"
        if per_call > 1:
            name = f"suite, {per_call} members per batched call (vmap)"
        rows.append((name, best_time(run, args.repeats)))
    forward = best_time(lambda: predict_log_probs(model, x, batch, CPU), args.repeats)
    instance = create_model("vit_mini_b", 10, (1, 1, 40), seed=0)
    preparation = [
        ("naive: deepcopy + torch rounding + load_state_dict",
         best_time(lambda: naive_loop(model, fmt, args.members, x, batch, False), args.repeats)),
        ("suite: kernel rounding + load_into",
         best_time(lambda: suite_preparation(instance, state, fmt, args.members), args.repeats)),
    ]  # fmt: skip
    lines = [
        f"Throughput: {args.members} INT-{args.bits} BSR members of vit_mini_b "
        f"({count_params(model) / 1e3:.0f} k params) on {len(x)} test points, batch {batch}; "
        f"best of {args.repeats}. One FP32 forward over the split takes {forward:.2f} s, so "
        f"{args.members} forwards alone take {args.members * forward:.1f} s.",
        "",
        f"| {'method':<52} | {'seconds':>8} | {'members/s':>9} | {'x naive':>7} |",
        f"|{'-' * 54}|{'-' * 9}:|{'-' * 10}:|{'-' * 8}:|",
    ]
    for name, seconds in rows:
        lines.append(
            f"| {name:<52} | {seconds:8.2f} | {args.members / seconds:9.2f} | "
            f"{naive / seconds:7.2f} |"
        )
    naive_prep = preparation[0][1]
    lines += [
        "",
        f"Member preparation alone (the same {args.members} members, no forward pass):",
        "",
        f"| {'preparation':<52} | {'seconds':>8} | {'members/s':>9} | {'x naive':>7} |",
        f"|{'-' * 54}|{'-' * 9}:|{'-' * 10}:|{'-' * 8}:|",
    ]
    for name, seconds in preparation:
        lines.append(
            f"| {name:<52} | {seconds:8.3f} | {args.members / seconds:9.0f} | "
            f"{naive_prep / seconds:7.1f} |"
        )
    return lines


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(mode: str, folder: Path) -> None:
    """One measured process: build ViT-B/16, evaluate FP32 or stream the member files."""
    torch.set_num_threads(1)
    model = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    images = torch.randn(IMAGE_BATCH, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    if mode == "fp32":
        predict_log_probs(model, images, IMAGE_BATCH, CPU)
    else:
        files = sorted(folder.glob("member*.safetensors"))
        members = (load_member(f)[0] for f in files)
        spine.evaluate(model, members, spine.open_member(model), images, IMAGE_BATCH, CPU)
    print(f"{peak_rss_mb():.1f}")


def measure(mode: str, folder: Path) -> float:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def memory_table(args) -> list[str]:
    fmt = int_format(args.bits)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = timm.create_model("vit_base_patch16_224", pretrained=False)
        state = model.state_dict()
        params, member_bits = count_params(model), 0
        for k in range(args.members):
            member: Member = quantize(state, fmt, "bsr", member_seed(0, k))
            member_bits = save_member(folder / f"member{k:02d}.safetensors", member, {})
        del model, state, member
        fp32 = measure("fp32", folder)
        streamed = measure("members", folder)
    return [
        f"Peak memory: vit_base_patch16_224 ({params / 1e6:.1f} M params, "
        f"FP32 weights {params * 4 / 2**20:.0f} MiB; one INT-{args.bits} member file "
        f"{member_bits / 8 / 2**20:.0f} MiB), {IMAGE_BATCH} images of 224 x 224, one thread; "
        "peak resident set of a fresh process (includes the Python, torch and timm imports).",
        "",
        f"| {'evaluation':<52} | {'peak MiB':>8} | {'x FP32':>6} |",
        f"|{'-' * 54}|{'-' * 9}:|{'-' * 7}:|",
        f"| {'the FP32 model':<52} | {fp32:8.0f} | {1:6.2f} |",
        f"| {f'{args.members} INT-{args.bits} members streamed from files':<52} | "
        f"{streamed:8.0f} | {streamed / fp32:6.2f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    parser.add_argument("--child", choices=("fp32", "members"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return
    from lpe.core.runtime import set_threads

    set_threads(args.threads)
    lines = [machine_line(), "", *throughput_table(args), "", *memory_table(args)]
    emit("\n".join(lines) + "\n", args.out, "Ensemble evaluation",
         "python benchmarks/ensemble_eval.py")  # fmt: skip


if __name__ == "__main__":
    main()
