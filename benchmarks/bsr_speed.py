"""Benchmark: Bernoulli stochastic rounding of a ViT-B/16-sized weight set to INT-b codes (and,
through ``lpe.formats.number_formats``, to the float, NF4 and MX formats).

Prints one table. The weight set is the quantized tensors of timm's ``vit_base_patch16_224``
(``pretrained=False``, no download), per-output-channel scales. Every row rounds the same weights
to codes in the same run: the torch reference expression (floor + rand + compare), the same under
``torch.compile`` (optional, slow to compile), QPyTorch's stochastic fixed-point quantizer (when
installed), and this suite's counter-based kernel (``lpe.formats.rounding``). The limit row is a
plain memory copy into a preallocated buffer, converted to params/s for the 4 bytes read + 1 byte
written that rounding needs.
Bit-packing and unpacking of the codes are timed too.

Usage: ``python benchmarks/bsr_speed.py [--bits 5] [--repeats 3] [--compile] [--out FILE.md]``
"""

from __future__ import annotations

import argparse

import timm
import torch
from common import best_time, emit, machine_line

from lpe.formats import packing, rounding
from lpe.formats.number_formats import get_format, int_format
from lpe.formats.policy import QuantPolicy
from lpe.formats.rounding import bsr_reference, format_scales, round_stochastic
from lpe.members.files import tensor_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    fmt = int_format(args.bits)
    qmax = int(fmt.max_value)

    model = timm.create_model("vit_base_patch16_224", pretrained=False)
    state = model.state_dict()
    names = QuantPolicy().split(state).quantized
    tensors = {n: state[n].contiguous() for n in names}
    scales = {n: format_scales(fmt, t) for n, t in tensors.items()}  # (rows, 1): 2-D weights
    params = sum(t.numel() for t in tensors.values())

    def torch_expression():
        g = torch.Generator().manual_seed(0)
        return [bsr_reference(t, scales[n], qmax, g) for n, t in tensors.items()]

    def lpe_kernel():
        return [rounding.bsr_codes(t, scales[n], qmax, tensor_key(0, n))
                for n, t in tensors.items()]  # fmt: skip

    rows = [
        ("torch expression (floor + rand + compare)", best_time(torch_expression, args.repeats))
    ]
    if args.compile:
        compiled = torch.compile(bsr_reference)

        def torch_compiled():
            g = torch.Generator().manual_seed(0)
            return [compiled(t, scales[n], qmax, g) for n, t in tensors.items()]

        rows.append(("torch.compile of the expression", best_time(torch_compiled, args.repeats)))
    try:
        from qtorch.quant import fixed_point_quantize

        def qpytorch():
            return [fixed_point_quantize(t / scales[n], args.bits, 0, rounding="stochastic")
                    for n, t in tensors.items()]  # fmt: skip

        rows.append(
            ("QPyTorch fixed_point_quantize (stochastic)", best_time(qpytorch, args.repeats))
        )
    except ImportError:
        rows.append(("QPyTorch fixed_point_quantize (not installed)", float("nan")))
    rows.append(
        (
            "lpe.formats.rounding.bsr_codes (counter-based, numba)",
            best_time(lpe_kernel, args.repeats),
        )
    )

    # What members use since the format objects: scales and codes together, for INT-b (its
    # floor fast path) and for grid formats (a binary search per weight). The INT kernel with
    # its scales is the row to compare INT-b with.
    def kernel_with_scales():
        return [rounding.bsr_codes(t, format_scales(fmt, t), qmax, tensor_key(0, n))
                for n, t in tensors.items()]  # fmt: skip

    rows.append(
        ("lpe.formats.rounding.bsr_codes + its scales", best_time(kernel_with_scales, args.repeats))
    )
    for name in (f"int{args.bits}", "fp8_e4m3", "fp6_e3m2", "fp4_e2m1", "nf4", "mxfp4"):
        number_format = get_format(name)

        def format_bsr(number_format=number_format):
            return [
                round_stochastic(number_format, t, tensor_key(0, n)) for n, t in tensors.items()
            ]

        rows.append(
            (
                f"lpe.formats.rounding {name} (scales + codes)",
                best_time(format_bsr, args.repeats),
            )
        )

    flat = torch.cat([t.reshape(-1) for t in tensors.values()])
    destination = torch.empty_like(flat).fill_(0)  # touched once: no page faults while timed
    copy_s = best_time(lambda: destination.copy_(flat), args.repeats)
    copy_bytes_per_s = 2 * 4 * params / copy_s  # read + write of FP32
    limit = copy_bytes_per_s / 5  # rounding reads 4 bytes and writes 1 per parameter

    codes = torch.cat([c.reshape(-1) for c in lpe_kernel()]).numpy()
    pack_s = best_time(lambda: packing.pack(codes, args.bits, qmax), args.repeats)
    packed = packing.pack(codes, args.bits, qmax)
    unpack_s = best_time(lambda: packing.unpack(packed, args.bits, qmax, params),
                         args.repeats)  # fmt: skip

    qpy = next((t for name, t in rows if name.startswith("QPyTorch") and t == t), None)
    lines = [
        f"BSR to INT-{args.bits}, {params / 1e6:.1f} M params ({len(tensors)} tensors of "
        f"vit_base_patch16_224), per-channel scales; best of {args.repeats}.",
        machine_line(),
        f"Memory copy: {copy_bytes_per_s / 1e9:.1f} GB/s, so the limit is "
        f"{limit / 1e6:.0f} M params/s.",
        "",
        f"| {'method':<46} | {'seconds':>8} | {'M params/s':>10} | {'x QPyTorch':>10} | "
        f"{'% of copy limit':>15} |",
        f"|{'-' * 48}|{'-' * 9}:|{'-' * 11}:|{'-' * 11}:|{'-' * 16}:|",
    ]
    for name, seconds in rows:
        rate = params / seconds
        ratio = f"{qpy / seconds:.1f}" if qpy else "-"
        lines.append(
            f"| {name:<46} | {seconds:8.3f} | {rate / 1e6:10.0f} | {ratio:>10} | "
            f"{100 * rate / limit:14.0f}% |"
        )
    for name, seconds in (("pack codes (lpe.formats.packing.pack)", pack_s),
                          ("unpack codes (lpe.formats.packing.unpack)", unpack_s)):  # fmt: skip
        lines.append(
            f"| {name:<46} | {seconds:8.3f} | {params / seconds / 1e6:10.0f} | {'-':>10} | "
            f"{'-':>15} |"
        )
    text = "\n".join(lines) + "\n"
    emit(text, args.out, "BSR speed", "python benchmarks/bsr_speed.py")


if __name__ == "__main__":
    main()
