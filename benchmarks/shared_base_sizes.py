"""Storage of an LPE-BSR ensemble of ViT-B/16 under both accountings (issue 29).

The paper's accounting counts M full members (each its codes, scales and FP32 tensors); the
shared-base accounting (``lpe.members.shared_base``) one base at the format's width, one bit per
member and quantized weight, and the scales and FP32 tensors once. Sizes do not depend on the
weights, so the model is built with ``pretrained=False`` (no download). Each row is checked against
a real ensemble file of two members: its counted bits follow the same formula, and the file holds
them plus its header.

Usage: ``python benchmarks/shared_base_sizes.py [--model vit_base_patch16_224]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import timm

from lpe.formats.number_formats import int_format
from lpe.formats.packing import packed_nbytes
from lpe.members.files import member_seed, quantize
from lpe.members.shared_base import encode, save_shared_base
from lpe.models.factory import keep_head_fp32


def plane_bits(member) -> int:
    """One member's bit-plane: one bit per quantized weight, packed per tensor."""
    return sum(8 * packed_nbytes(c.numel(), 1) for c in member.codes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    args = parser.parse_args()
    model = keep_head_fp32(timm.create_model(args.model, pretrained=False))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    fp32_mbit = 32 * sum(t.numel() for t in state.values()) / 1e6
    print(f"{args.model}: {fp32_mbit / 32:.1f}M parameters, FP32 model {fp32_mbit:.1f} Mbit\n")
    print("| format | M | paper: M members (Mbit) | shared base (Mbit) | ratio | "
          "bits per quantized weight (shared) | file check (2 members) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|")
    for bits in (4, 5):
        fmt = int_format(bits)
        member = quantize(state, fmt, "rtn")
        quantized = sum(c.numel() for c in member.codes.values())
        pair = encode([member, quantize(state, fmt, "bsr", member_seed(0, 0))])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "e.safetensors"
            counted = save_shared_base(path, pair, {})
            header = path.stat().st_size - counted // 8
        formula = member.bits + 2 * plane_bits(member)
        check = f"counted {'=' if counted == formula else '!='} formula; header {header} B"
        for m in (10, 20):
            paper, shared = m * member.bits, member.bits + m * plane_bits(member)
            per_weight = (shared - (member.bits - bits * quantized)) / quantized
            print(f"| {fmt.label} | {m} | {paper / 1e6:.1f} | {shared / 1e6:.1f} | "
                  f"{paper / shared:.1f}x | {per_weight:.2f} | {check} |")  # fmt: skip


if __name__ == "__main__":
    main()
