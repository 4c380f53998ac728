"""Speed of the shared-base ensemble file on ViT-B/16's weights (issue 29).

Times, one thread, best of ``--repeats`` after a warm-up (``common.best_time``; encoding: one
call): encoding M drawn members into a shared base (in memory), decoding one member from it,
today's per-member path (``lpe.members.files.load_member`` of a member file: read, checksum,
unpack), and a memory copy of the same member's packed bytes. The target:
decoding within 2x of today's per-member load (results: benchmarks/results/shared_base_speed.md).
Weights are random (``pretrained=False``; the speed does not depend on them).

Usage: ``python benchmarks/shared_base_speed.py [--members 20] [--bits 5]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import timm
import torch
from common import best_time

from lpe.core.runtime import set_threads
from lpe.formats.number_formats import int_format
from lpe.formats.packing import pack_indices
from lpe.members.files import load_member, member_seed, quantize, save_member
from lpe.members.shared_base import encode, load_shared_base, save_shared_base
from lpe.models.factory import keep_head_fp32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--bits", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    set_threads(1)
    model = keep_head_fp32(timm.create_model(args.model, pretrained=False))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    fmt = int_format(args.bits)
    members = [quantize(state, fmt, "bsr", member_seed(0, k)) for k in range(args.members)]
    packed = torch.cat([pack_indices(c, fmt.code_bits) for c in members[0].codes.values()])
    with tempfile.TemporaryDirectory() as tmp:
        member_file, ensemble_file = Path(tmp) / "m.safetensors", Path(tmp) / "e.safetensors"
        save_member(member_file, members[0], {})
        ensemble = encode(members)
        save_shared_base(ensemble_file, ensemble, {})
        loaded, _ = load_shared_base(ensemble_file)
        start = time.perf_counter()
        encode(members)  # once: seconds per call, and the ensemble above is the same
        rows = {
            f"encode {args.members} members (in memory)": time.perf_counter() - start,
            "decode one member (from a loaded file)": best_time(lambda: loaded.member(3),
                                                                args.repeats),
            "load one member file (today)": best_time(lambda: load_member(member_file),
                                                      args.repeats),
            "copy the member's packed codes": best_time(lambda: packed.clone(), args.repeats),
        }  # fmt: skip
    quantized = sum(c.numel() for c in members[0].codes.values())
    print(f"{args.model}, {quantized / 1e6:.1f}M quantized weights, INT-{args.bits}, "
          f"M = {args.members}, one thread\n")  # fmt: skip
    print("| operation | seconds | vs loading a member file |\n|---|---:|---:|")
    today = rows["load one member file (today)"]
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.3f} | {seconds / today:.2f}x |")


if __name__ == "__main__":
    main()
