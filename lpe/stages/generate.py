"""The ``generate`` stage: low precision members of a checkpoint, written as real files.

For ``--method bsr`` it draws ``--members`` members by Bernoulli stochastic rounding, member ``k``
seeded by ``member_seed(seed, k)``; for ``--method rtn`` it writes the single rounding-to-nearest
member. The output folder holds ``member00.safetensors, ...`` (``--layout files``, the default) or
one shared-base ``ensemble.safetensors`` (``--layout shared-base``, what the workflow writes), and
``manifest.json`` (format, seeds, policy counts, bits); it appears under its final name only when
complete (``lpe.members.sets``).

Usage: ``python -m lpe.stages.generate --checkpoint CKPT --method bsr --format int4 --seed 0
--members 10 --out work/mini/members/vit_mini_s/bsr-int4-seed0``
"""

from __future__ import annotations

import argparse

from lpe.cli.flags import add_member_arguments, member_format
from lpe.core.runtime import set_threads
from lpe.members.files import METHODS
from lpe.members.sets import LAYOUTS, generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--method", required=True, choices=METHODS)
    add_member_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="ensemble seed (BSR)")
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument(
        "--layout",
        default="files",
        choices=LAYOUTS,
        help="one file per member (files) or one shared-base ensemble file",
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    try:
        fmt, policy = member_format(args)
    except ValueError as err:
        parser.error(str(err))
    manifest = generate(
        args.checkpoint,
        args.out,
        fmt,
        args.method,
        args.seed,
        members=args.members,
        policy=policy,
        layout=args.layout,
    )
    shared = manifest.get("member_shared_bits")
    print(
        f"wrote {len(manifest['member_bits'])} members to {args.out}; "
        f"{manifest['member_bits'][0]:,} bits each"
        + (f"; {sum(shared):,} bits in all as one shared base" if shared else "")
    )


if __name__ == "__main__":
    main()
