"""Member sets: one ensemble's members and manifest in a folder, and the job part that picks
their format (``MemberFormat``).

``generate`` makes ``--members`` members of a checkpoint by Bernoulli stochastic rounding (member
``k`` seeded by ``member_seed(seed, k)``) or the single rounding-to-nearest member, into a folder
that appears under its final name only when complete, in one of two layouts:

- ``shared-base`` (what the workflow writes): one ``ensemble.safetensors``, the members as a shared
  base plus one bit-plane each (``lpe.members.shared_base``), decoded one at a time;
- ``files``: one member file each, ``member00.safetensors, ...`` (``lpe.members.files``).

Beside it, ``manifest.json``: format, seeds, policy counts, and each member's bits under both
accountings: ``member_bits`` (a full member each, the paper's) and, for a shared-base file,
``member_shared_bits`` (member 0 the base and its plane, the others their plane). A folder's
members read back (``folder_members``) equal, bit for bit, in either layout (tested).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lpe.core.artifacts import ArtifactError, atomic_dir, read_manifest, write_manifest
from lpe.core.jobs import Job, setting
from lpe.formats.number_formats import FORMATS, NumberFormat, get_format
from lpe.formats.policy import DEFAULT_EXCLUDE, QuantPolicy
from lpe.members.files import (
    Member,
    load_member_of,
    member_seed,
    quantize,
    require_made_from,
    save_member,
)
from lpe.members.shared_base import draw_shared_base, load_shared_base, save_shared_base
from lpe.models.checkpoints import load_checkpoint

LAYOUTS = ("shared-base", "files")


@dataclass(frozen=True, kw_only=True)
class MemberFormat(Job):
    """The job part of the stages that make members: the number format and the rounding policy
    (the config's ``quant`` section)."""

    format: str = setting(help=f"number format name: {', '.join(FORMATS)} (and int2..int16)")
    per_channel: bool = setting(
        True,
        "one scale per output channel (--no-per-channel: one per tensor)",
        config="quant.per_channel",
    )
    exclude: tuple[str, ...] = setting(
        DEFAULT_EXCLUDE, "name patterns kept in FP32", config="quant.exclude"
    )
    min_ndim: int = setting(2, "tensors of fewer dimensions stay FP32", config="quant.min_ndim")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format is not None:  # (a job may make members only when given a format)
            self.number_format()  # an unknown format stops here, before the checkpoint is read

    def number_format(self) -> NumberFormat:
        return get_format(self.format, per_channel=self.per_channel)

    def policy(self) -> QuantPolicy:
        return QuantPolicy(exclude=tuple(self.exclude), min_ndim=self.min_ndim)


ENSEMBLE_FILE = "ensemble.safetensors"


def generate(
    checkpoint,
    out,
    fmt: NumberFormat,
    method: str,
    seed: int,
    *,
    members: int,
    policy: QuantPolicy,
    layout: str = "files",
) -> dict:
    """Write the members (in ``layout``) and their manifest into ``out``; return the manifest."""
    if layout not in LAYOUTS:
        raise ValueError(f"members layout must be one of {LAYOUTS}, got {layout!r}")
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if method == "rtn" and members != 1:
        raise ValueError("rounding-to-nearest is deterministic: use --members 1 with --method rtn")
    state, info = load_checkpoint(checkpoint)
    split = policy.split(state)
    print(f"{info.model} {fmt.name} {method}: {split.describe()}")
    files, bits = [], []
    provenance = {"checkpoint_sha256": info.sha256, "model": info.model}
    seeds = [member_seed(seed, k) if method == "bsr" else 0 for k in range(members)]
    progress = f"generate {Path(out).name}"
    with atomic_dir(out) as tmp:
        if layout == "shared-base":  # each member encoded as it is drawn (lpe.members.shared_base)
            ensemble = draw_shared_base(state, fmt, [(method, s) for s in seeds], policy, progress)
            save_shared_base(tmp / ENSEMBLE_FILE, ensemble, provenance)
            bits = [ensemble.member_file_bits] * members  # what each member's file would cost
            stored = {"ensemble": ENSEMBLE_FILE, "member_shared_bits": ensemble.member_bits()}
        else:
            for k in tqdm(range(members), desc=progress, mininterval=5):
                member = quantize(state, fmt, method, seed=seeds[k], policy=policy)
                name = f"member{k:02d}.safetensors"
                bits.append(save_member(tmp / name, member, provenance))
                files.append(name)
            stored = {"files": files}
        manifest = {
            "model": info.model,
            "checkpoint_sha256": info.sha256,
            "method": method,
            "format": fmt.name,
            "bits": fmt.code_bits,
            "per_channel": fmt.per_channel,
            "seed": seed,
            "member_seeds": seeds,
            **stored,
            "member_bits": bits,
            "policy": {"exclude": list(policy.exclude), "min_ndim": policy.min_ndim},
            "quantized_params": split.quantized_params,
            "kept_params": split.kept_params,
        }
        write_manifest(tmp, manifest)
    return manifest


def folder_members(
    folder, checkpoint, checkpoint_sha256: str, progress: str = ""
) -> tuple[dict, Iterator[Member]]:
    """A members folder's manifest and its members in order, read one at a time (decoded from
    its ensemble file, or read from its member files), each checked against the manifest and
    the checkpoint it must come from; ``progress``: a progress bar's label."""
    manifest = read_manifest(folder)
    if manifest["checkpoint_sha256"] != checkpoint_sha256:
        raise ArtifactError(
            f"members in {folder} were made from another checkpoint than {checkpoint}; "
            "delete the folder and rerun the workflow"
        )
    said = (manifest["method"], manifest["format"], manifest["bits"])

    def checked(member: Member, where) -> Member:
        if (member.method, member.fmt.name, member.fmt.code_bits) != said:
            raise ArtifactError(
                f"{where} is {member.method} {member.fmt.label} ({member.fmt.code_bits}-bit "
                f"codes), but {folder}'s manifest says {said[0]} {said[1]} ({said[2]}-bit "
                "codes); delete it and rerun"
            )
        return member

    def each(items):  # the bar wraps the names: it must not hold a member between two reads
        return tqdm(items, desc=progress, mininterval=5) if progress else items

    if "ensemble" not in manifest:
        paths = (Path(folder) / name for name in each(manifest["files"]))
        files = (
            checked(load_member_of(p, checkpoint, checkpoint_sha256), f"member file {p}")
            for p in paths
        )
        return manifest, files
    path = Path(folder) / manifest["ensemble"]
    ensemble, meta = load_shared_base(path)
    require_made_from(meta, f"ensemble file {path}", checkpoint, checkpoint_sha256)
    if len(ensemble) != len(manifest["member_bits"]):
        raise ArtifactError(
            f"{path} holds {len(ensemble)} members, {folder}'s manifest lists "
            f"{len(manifest['member_bits'])}"
        )
    where = f"ensemble file {path}"
    return manifest, (checked(ensemble.member(m), where) for m in each(range(len(ensemble))))


def folder_member(path, checkpoint, checkpoint_sha256: str) -> Member:
    """One member: a member file, or the first member of a members folder (either layout)."""
    if Path(path).is_dir():
        return next(folder_members(path, checkpoint, checkpoint_sha256)[1])
    return load_member_of(path, checkpoint, checkpoint_sha256)


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
