"""Member sets: one ensemble's member files and manifest in a folder, and the flags that pick them.

``generate`` writes ``--members`` members of a checkpoint by Bernoulli stochastic rounding (member
``k`` seeded by ``member_seed(seed, k)``) or the single rounding-to-nearest member, into a folder
of ``member00.safetensors, ...`` and ``manifest.json`` (format, seeds, policy counts, bits) that
appears under its final name only when complete.
"""

from __future__ import annotations

import argparse
import operator
from pathlib import Path

from tqdm import tqdm

from lpe.core.artifacts import atomic_dir, write_manifest
from lpe.core.settings import Option
from lpe.formats.integer import MAX_BITS, MIN_BITS
from lpe.formats.names import int_name
from lpe.formats.policy import DEFAULT_EXCLUDE, QuantPolicy
from lpe.formats.registry import FORMATS, NumberFormat, get_format
from lpe.members.files import member_seed, quantize, save_member
from lpe.models.checkpoints import load_checkpoint


def generate(
    checkpoint, out, fmt: NumberFormat, method: str, seed: int, members: int, policy: QuantPolicy
) -> dict:
    """Write the members and their manifest into ``out``; return the manifest."""
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if method == "rtn" and members != 1:
        raise ValueError("rounding-to-nearest is deterministic: use --members 1 with --method rtn")
    state, info = load_checkpoint(checkpoint)
    split = policy.split(state)
    print(f"{info.model} {fmt.name} {method}: {split.describe()}")
    files, seeds, bits = [], [], []
    with atomic_dir(out) as tmp:
        for k in tqdm(range(members), desc=f"generate {Path(out).name}", mininterval=5):
            s = member_seed(seed, k) if method == "bsr" else 0
            member = quantize(state, fmt, method, seed=s, policy=policy)
            name = f"member{k:02d}.safetensors"
            provenance = {"checkpoint_sha256": info.sha256, "model": info.model}
            bits.append(save_member(tmp / name, member, provenance))
            files.append(name)
            seeds.append(s)
        manifest = {
            "model": info.model,
            "checkpoint_sha256": info.sha256,
            "method": method,
            "format": fmt.name,
            "bits": fmt.code_bits,
            "per_channel": fmt.per_channel,
            "seed": seed,
            "member_seeds": seeds,
            "files": files,
            "member_bits": bits,
            "policy": {"exclude": list(policy.exclude), "min_ndim": policy.min_ndim},
            "quantized_params": split.quantized_params,
            "kept_params": split.kept_params,
        }
        write_manifest(tmp, manifest)
    return manifest


# The rounding policy from the config's quant section (lpe.core.settings): config key -> option
QUANT_SETTINGS = {
    "quant.per_channel": Option("per_tensor", operator.not_),
    "quant.exclude": "exclude",
    "quant.min_ndim": "min_ndim",
}


def add_member_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format`` (or ``--bits`` for INT-b) and the rounding policy's flags, shared by the
    stages that make members."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--format", help=f"number format name: {', '.join(FORMATS)} (and int2..int16)"
    )
    which.add_argument(
        "--bits",
        type=int,
        choices=range(MIN_BITS, MAX_BITS + 1),
        metavar=f"{{{MIN_BITS}..{MAX_BITS}}}",
        help="INT-b: the same as --format intB",
    )
    parser.add_argument("--per-tensor", action="store_true", help="one scale per tensor")
    parser.add_argument(
        "--exclude", nargs="*", default=list(DEFAULT_EXCLUDE), help="name patterns kept in FP32"
    )
    parser.add_argument("--min-ndim", type=int, default=2)


def seed_runs_problem(seeds: list[int], members_out: list, out: list) -> str | None:
    """What is wrong with per-seed run lists (``--seeds``, ``--members-out``, ``--out``), if any."""
    if not len(seeds) == len(members_out) == len(out):
        return (
            f"--seeds, --members-out and --out must pair up: got {len(seeds)} seeds, "
            f"{len(members_out)} member folders and {len(out)} predictions files"
        )
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        return f"--seeds must be distinct and >= 0, got {seeds}"
    return None


def member_format(args: argparse.Namespace) -> tuple[NumberFormat, QuantPolicy]:
    """The number format and rounding policy of ``add_member_arguments``' flags."""
    name = args.format if args.format is not None else int_name(args.bits)
    fmt = get_format(name, per_channel=not args.per_tensor)
    return fmt, QuantPolicy(exclude=tuple(args.exclude), min_ndim=args.min_ndim)
