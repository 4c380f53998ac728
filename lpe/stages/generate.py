"""The ``generate`` stage: low precision members of a checkpoint, written as real files.

For ``--method bsr`` it draws ``--members`` members by Bernoulli stochastic rounding, member ``k``
seeded by ``member_seed(seed, k)``; for ``--method rtn`` it writes the single rounding-to-nearest
member. The output folder holds ``member00.safetensors, ...`` (``--layout files``, the default) or
one shared-base ``ensemble.safetensors`` (``--layout shared-base``, what the workflow writes), and
``manifest.json`` (format, seeds, policy counts, bits); it appears under its final name only when
complete (``lpe.members.sets``).

Usage: ``python -m lpe.stages.generate --checkpoint CKPT --method bsr --format int4 --seed 0
--members 10 --out work/mini/members/vit_mini_s/bsr-int4-seed0``; from Python:
``run(GenerateJob(checkpoint=..., method="bsr", format="int4", out=...))``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpe.cli.jobs import from_cli
from lpe.core.jobs import setting
from lpe.core.runtime import Threads, set_threads
from lpe.members.files import METHODS
from lpe.members.sets import LAYOUTS, MemberFormat, generate


@dataclass(frozen=True, kw_only=True)
class GenerateJob(MemberFormat, Threads):
    """One folder of members of a checkpoint."""

    checkpoint: str = setting(help="the FP32 checkpoint the members are made from")
    method: str = setting(
        help="bsr: stochastic rounding; rtn: rounding to nearest", choices=METHODS
    )
    seed: int = setting(0, "ensemble seed (BSR)")
    members: int = setting(1, "members drawn (1 for rtn)")
    layout: str = setting(
        "files", "one file per member (files) or one shared-base ensemble file", choices=LAYOUTS
    )
    out: str = setting(help="the member folder written")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def run(job: GenerateJob) -> dict:
    """Write the job's members; their manifest."""
    set_threads(job.threads)
    manifest = generate(
        job.checkpoint,
        job.out,
        job.number_format(),
        job.method,
        job.seed,
        members=job.members,
        policy=job.policy(),
        layout=job.layout,
    )
    shared = manifest.get("member_shared_bits")
    print(
        f"wrote {len(manifest['member_bits'])} members to {job.out}; "
        f"{manifest['member_bits'][0]:,} bits each"
        + (f"; {sum(shared):,} bits in all as one shared base" if shared else "")
    )
    return manifest


def main(argv: list[str] | None = None) -> None:
    run(from_cli(GenerateJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
