"""Speed and memory of ``lpe.LowPrecisionEnsemble`` (issue 39), one thread, on this CPU.

1. Evaluation: the object's ``log_probs`` of M members on one batch against M forward passes of
   the FP32 model on the same batch (the least any ensemble of M members can cost), on a timm
   ViT-S/16 and a timm CNN with depthwise convolutions (EfficientNet-Lite0), ``pretrained=False``
   (the speed does not depend on the weights). Target: within 1.1x.
2. Building (drawing + encoding) M members of ViT-B/16 into a shared base, streamed
   (``draw_shared_base``, what the object and the generate stage do) and the old way (every
   member drawn, then ``encode``), against the BSR kernel alone for the same members. Target:
   within 3x the kernel's time, memory within the base + the planes + one member.

Every measurement runs in its own process (``multiprocessing``, spawn); "added" is its peak
resident memory during the measured call minus its memory just before (Linux: the peak is reset
with ``/proc/self/clear_refs`` and read as ``VmHWM``), so the model, the batch and the stored
members, made before, are not in it. Times: one call each (the ensemble's first call included:
nothing is cached between calls).

3. Small batches (``--small-batch``, default 8): the same ratio, and the ratio with the members
   kept decoded (``keep_decoded=True``, timed once they are: the steady state of repeated calls).

Usage: ``python benchmarks/lpe_object.py [--members 10] [--batch 64] [--sections ...]
[--out FILE.md]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
from common import emit, machine_line

MB = 2**20
SECTIONS = ("evaluation", "small-batch", "building")


def _status(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: the peak), MiB."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _start_measuring() -> float:
    """Reset this process's peak resident memory to its current one (Linux ``clear_refs``: 5)
    and return it, MiB: the peak read later is then the measured code's own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def _peak() -> float:
    return _status("VmHWM")


def _model(name: str):
    import timm

    from lpe.models.factory import keep_head_fp32

    return keep_head_fp32(timm.create_model(name, pretrained=False)).eval()


def evaluate(kind: str, name: str, members: int, batch: int, queue) -> None:
    import torch

    from lpe import LowPrecisionEnsemble
    from lpe.core.runtime import set_threads

    set_threads(1)
    model = _model(name)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(x[:2])  # warm-up of the kernels (both kinds alike)
    extra = {}
    if kind in ("ensemble", "kept"):
        ensemble = LowPrecisionEnsemble(model, "int5", members, keep_decoded=kind == "kept")
        extra["stored_mb"] = ensemble.bits / 8 / MB
        extra["member_mb"] = sum(
            4 * c.numel() for c in next(ensemble.members()).codes.values()
        ) / MB  # fmt: skip
        if kind == "kept":  # the steady state: every member decoded by an earlier call
            with torch.inference_mode():
                ensemble.log_probs(x)
    before = _start_measuring()
    start = time.perf_counter()
    with torch.inference_mode():
        if kind in ("ensemble", "kept"):
            ensemble.log_probs(x)
        else:
            for _ in range(members):
                model(x)
    seconds = time.perf_counter() - start
    queue.put({"seconds": seconds, "before": before, "peak": _peak(), **extra})


def build(kind: str, name: str, members: int, bits: int, queue) -> None:
    from lpe.core.runtime import set_threads
    from lpe.formats.number_formats import int_format
    from lpe.formats.policy import policy_for
    from lpe.members.files import member_seed, quantize
    from lpe.members.shared_base import draw_shared_base, encode

    set_threads(1)
    model = _model(name)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    policy, fmt = policy_for(model), int_format(bits)
    draws = [("bsr", member_seed(0, k)) for k in range(members)]
    quantize(state, fmt, "bsr", 0, policy)  # compiles the kernel outside the timing
    before = _start_measuring()
    start = time.perf_counter()
    extra = {}
    if kind == "kernel":  # the BSR kernel alone, each member dropped at once
        for method, seed in draws:
            quantize(state, fmt, method, seed, policy)
    elif kind == "streamed":
        shared = draw_shared_base(state, fmt, draws, policy)
        extra["stored_mb"] = shared.bits / 8 / MB
    else:  # the old way: all members in memory, then encoded
        shared = encode([quantize(state, fmt, m, s, policy) for m, s in draws])
    seconds = time.perf_counter() - start
    quantized = sum(t.numel() for n, t in state.items() if policy.quantizes(n, t))
    extra["member_codes_mb"] = quantized * np.dtype(fmt.code_dtype).itemsize / MB
    queue.put({"seconds": seconds, "before": before, "peak": _peak(), **extra})


def measure(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def model_rows(args, batch: int, kinds: tuple[str, ...], row) -> list[str]:
    """A table row per model of ``args.models``: ``row(name, {kind: measurement})``, each kind
    of :func:`evaluate` measured in its own process at ``batch``; printed as it comes."""
    rows = []
    for name in args.models:
        results = {kind: measure(evaluate, kind, name, args.members, batch) for kind in kinds}
        rows.append(row(name, results))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--small-batch", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["vit_small_patch16_224",
                                                        "efficientnet_lite0"])  # fmt: skip
    parser.add_argument("--build-model", default="vit_base_patch16_224")
    parser.add_argument("--build-members", type=int, default=20)
    parser.add_argument("--bits", type=int, default=5)
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="the tables to measure (default all)",
    )
    parser.add_argument("--out")
    args = parser.parse_args()
    lines = [f"{machine_line()} One thread per measurement, each in its own process.", ""]
    if "evaluation" in args.sections:
        lines += [
            f"## Evaluation: M = {args.members} INT-5 members, batch {args.batch}, 224 px",
            "",
            "| model | FP32, M passes (s) | ensemble (s) | ratio | FP32 added peak (MiB) | "
            "ensemble added peak (MiB) | stored members (MiB) | one member FP32 (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]

        def evaluation_row(name, r):
            fp32, ens = r["fp32"], r["ensemble"]
            return (
                f"| {name} | {fp32['seconds']:.2f} | {ens['seconds']:.2f} | "
                f"{ens['seconds'] / fp32['seconds']:.3f}x | {fp32['peak'] - fp32['before']:.0f} | "
                f"{ens['peak'] - ens['before']:.0f} | {ens['stored_mb']:.1f} | "
                f"{ens['member_mb']:.1f} |"
            )

        lines += model_rows(args, args.batch, ("fp32", "ensemble"), evaluation_row)
        lines += [
            "",
            "FP32 added peak: the activations of one forward (over the model). Ensemble "
            "added peak: over the model and the stored members, the same activations plus "
            "one member's decoded weights: the budget is one member + activations.",
            "",
        ]
    if "small-batch" in args.sections:
        lines += [
            f"## Small batches: M = {args.members} INT-5 members, batch {args.small_batch}",
            "",
            "| model | FP32, M passes (s) | ensemble (s) | ratio | kept decoded (s) | "
            "ratio | members kept decoded (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]

        def small_batch_row(name, r):
            fp32, ens, kept = r["fp32"], r["ensemble"], r["kept"]
            return (
                f"| {name} | {fp32['seconds']:.2f} | {ens['seconds']:.2f} | "
                f"{ens['seconds'] / fp32['seconds']:.3f}x | {kept['seconds']:.2f} | "
                f"{kept['seconds'] / fp32['seconds']:.3f}x | "
                f"{args.members * kept['member_mb']:.0f} |"
            )

        lines += model_rows(args, args.small_batch, ("fp32", "ensemble", "kept"), small_batch_row)
        lines += [
            "",
            "At a small batch the members' decoding (unpacking the planes, dequantizing) is "
            "not hidden by the forwards. Kept decoded (`LowPrecisionEnsemble(..., "
            "keep_decoded=True)`): each member decoded on its first call and kept, timed on a "
            "later call; its memory is M copies of the model's quantized weights.",
            "",
        ]
    if "building" in args.sections:
        lines += [
            f"## Building: {args.build_members} INT-{args.bits} members of {args.build_model}",
            "",
            "| how | seconds | vs the BSR kernel | added peak (MiB) |",
            "|---|---:|---:|---:|",
        ]
        results = {}
        for kind in ("kernel", "streamed", "all-then-encode"):
            results[kind] = measure(build, kind, args.build_model, args.build_members, args.bits)
            r = results[kind]
            lines.append(
                f"| {kind} | {r['seconds']:.2f} | "
                f"{r['seconds'] / results['kernel']['seconds']:.2f}x | "
                f"{r['peak'] - r['before']:.0f} |"
            )
            print(lines[-1], flush=True)
        streamed = results["streamed"]
        lines += [
            "",
            f"Streamed: the base and the planes take {streamed['stored_mb']:.0f} MiB; one "
            f"member's codes {streamed['member_codes_mb']:.0f} MiB (uint8), as the kernel "
            "alone holds them with its scales and kept tensors (the kernel row).",
            "",
        ]
    emit(
        "\n".join(lines) + "\n",
        args.out,
        "Speed and memory of lpe.LowPrecisionEnsemble",
        "python benchmarks/lpe_object.py",
    )


if __name__ == "__main__":
    main()
