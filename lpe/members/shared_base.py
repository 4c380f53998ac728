"""An ensemble of low precision members as one file: a shared base plus one bit per member and
weight ("ex uno pluria", literally; the library part of the shared-base accounting).

The members of one checkpoint in one format share everything but their codes: the scales come
from the FP32 weights (``lpe.members.files.quantize``) and the kept tensors are the FP32 ones. Each
quantized weight's code is one of the two grid neighbours of ``w / s`` (BSR draws one of them, RTN
takes the nearer). So M members are exactly

- one **base**: per quantized weight, the smallest of the members' codes (the lower neighbour
  wherever a member took it), packed at the format's width; the scales and the kept tensors, once;
- M **bit-planes**: ``code_m - base``, one bit per quantized weight per member (none for a
  single member: its codes are the base, and the file costs what its member file does).

Member m decodes as ``base + plane_m`` into an ordinary :class:`lpe.members.files.Member`, bit for
bit the one encoded, without materialising the others. Storage: ``b + M`` bits per quantized weight
and the FP32 tensors once, against ``M * b`` bits and the FP32 tensors M times for M member files
(the paper's accounting, which the tables keep).

On disk (safetensors with the checksums of ``lpe.core.artifacts``): ``base/<name>`` (packed codes),
``planes/<name>`` (uint8, ``(M, ceil(n / 8))``, little-endian bit order), ``scales/<name>``,
``fp32/<name>``; the metadata holds the format, each member's method and seed, the shapes, the
counted bits and the caller's provenance (for example the checkpoint's hash).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpe.core.artifacts import ArtifactError, load_tensors, save_tensors
from lpe.formats.number_formats import NumberFormat, get_format
from lpe.formats.packing import pack_indices, packed_nbytes, unpack_indices
from lpe.formats.policy import QuantPolicy
from lpe.formats.rounding import format_scales, loaded_scales, lower_codes, stored_scales
from lpe.members.files import Member, quantize, transposed_metadata

ENSEMBLE_KIND = "lpe-shared-base-ensemble"


@dataclass
class SharedBase:
    """M members of one format as a base and M bit-planes (see the module docstring)."""

    fmt: NumberFormat
    methods: list[str]  # per member: "bsr" or "rtn"
    seeds: list[int]  # per member
    base: dict[str, torch.Tensor]  # name -> grid indices, the tensor's shape
    planes: dict[str, np.ndarray]  # name -> uint8 (M, ceil(numel / 8)), packed bits
    scales: dict[str, torch.Tensor]
    kept: dict[str, torch.Tensor]
    transposed: frozenset[str] = frozenset()  # as lpe.members.files.Member.transposed

    def __len__(self) -> int:
        return len(self.methods)

    def member(self, m: int) -> Member:
        """Member ``m`` as it was encoded: ``base + plane_m``; the others stay packed."""
        if not 0 <= m < len(self):
            raise IndexError(f"member {m} of an ensemble of {len(self)}")
        codes = {}
        for name, base in self.base.items():
            if not len(self.planes[name]):  # one member: the base is its codes
                codes[name] = base
                continue
            bit = np.unpackbits(self.planes[name][m], count=base.numel(), bitorder="little")
            # base + 1 stays on the grid (the base is a member's code minus 0 or 1): no overflow.
            # In numpy: torch has no addition for the uint16 codes of formats wider than 8 bits.
            code = base.numpy() + bit.reshape(base.shape).astype(base.numpy().dtype)
            codes[name] = torch.from_numpy(code)
        return Member(
            self.fmt, self.methods[m], self.seeds[m], codes, self.scales, self.kept, self.transposed
        )

    @property
    def bits(self) -> int:
        """Storage under the shared-base accounting: the base codes at the format's width, M
        packed planes, the scales and the kept tensors once."""
        width = self.fmt.code_bits
        base = sum(8 * packed_nbytes(c.numel(), width) for c in self.base.values())
        planes = sum(8 * p.size for p in self.planes.values())
        scales = sum(self.fmt.scale_bits * s.numel() for s in self.scales.values())
        kept = sum(8 * t.element_size() * t.numel() for t in self.kept.values())
        return base + planes + scales + kept

    @property
    def member_file_bits(self) -> int:
        """What one member costs stored alone (a member file, the paper's accounting): its codes
        (the base's shapes) at the format's width, the scales and the kept tensors; every member
        costs the same, and nothing is decoded to count it."""
        return self.bits - sum(8 * p.size for p in self.planes.values())

    def member_bits(self) -> list[int]:
        """``bits`` split over the members: member 0 holds the base, the scales, the kept tensors
        and its plane, every other member its plane; so the first m (m >= 2) sum to an ensemble
        of m members stored this way (one member alone is stored as itself: no plane)."""
        plane = sum(8 * p.shape[1] for p in self.planes.values())
        return [self.bits - (len(self) - 1) * plane] + [plane] * (len(self) - 1)


def draw_shared_base(
    state: Mapping[str, torch.Tensor],
    fmt: NumberFormat,
    draws: Sequence[tuple[str, int]],
    policy: QuantPolicy | None = None,
    progress: str = "",
) -> SharedBase:
    """Draw the members ``draws`` (``(method, seed)`` each, ``lpe.members.files.quantize``) of
    ``state`` and encode each as it is drawn: memory holds the base, the planes and one member.

    The base is each weight's lower grid neighbour, computed from the weights alone
    (:meth:`NumberFormat.lower_codes`), so a member's plane (``code - base``, 0 or 1) can be
    written before the next member is drawn. Decoded members are bit for bit the ones drawn, as
    with :func:`encode` (whose base is the members' minimum: the same wherever some member took
    the lower neighbour). One member is stored as itself (its codes are the base, no plane).
    """
    if not draws:
        raise ValueError("draw_shared_base needs at least one (method, seed)")
    if len(draws) == 1:
        method, seed = draws[0]
        return encode([quantize(state, fmt, method, seed, policy)])
    policy = policy or QuantPolicy()
    scales = {n: format_scales(fmt, t) for n, t in state.items() if policy.quantizes(n, t)}
    base = {n: lower_codes(fmt, state[n], s) for n, s in scales.items()}
    low = {n: b.numpy() for n, b in base.items()}
    planes = {n: np.empty((len(draws), (b.numel() + 7) // 8), np.uint8) for n, b in base.items()}
    kept = {}
    steps = tqdm(draws, desc=progress, mininterval=5, disable=not progress)
    for m, (method, seed) in enumerate(steps):
        member = quantize(state, fmt, method, seed, policy)
        for name, code in member.codes.items():
            # in the codes' unsigned type: a code below its base would wrap to a large step
            step = np.subtract(code.cpu().numpy(), low[name]).reshape(-1)
            if step.max(initial=0) > 1:  # cannot happen: both neighbours, one rule
                raise AssertionError(f"{name}: member {m}'s codes are not its base or next")
            planes[name][m] = np.packbits(step.astype(np.uint8, copy=False), bitorder="little")
        kept = member.kept
        del member  # before the next one is drawn
    return SharedBase(
        fmt=fmt,
        methods=[method for method, _ in draws],
        seeds=[seed for _, seed in draws],
        base=base,
        planes=planes,
        scales={n: s.cpu() for n, s in scales.items()},
        kept={n: t.cpu() for n, t in kept.items()},
    )


def encode(members: Sequence[Member]) -> SharedBase:
    """The shared base and bit-planes of ``members`` (one checkpoint, one format; BSR members
    and the RTN member alike). Refuses members that do not share their scales and kept tensors,
    or whose codes differ by more than one grid step: they are not one ensemble."""
    if not members:
        raise ValueError("encode needs at least one member")
    first = members[0]
    for k, member in enumerate(members[1:], start=1):
        problem = _mismatch(first, member)
        if problem:
            raise ValueError(f"member {k} cannot share member 0's base: {problem}")
    base, planes = {}, {}
    for name, code in first.codes.items():
        stacked = torch.stack([m.codes[name].cpu().to(torch.int64) for m in members])  # (M, ...)
        low = stacked.min(dim=0).values
        step = (stacked - low).reshape(len(members), -1)
        if int(step.max()) > 1:
            raise ValueError(
                f"{name}: members' codes differ by up to {int(step.max())} grid steps; a shared "
                "base holds members one step apart (BSR and RTN of the same weights)"
            )
        base[name] = low.to(code.dtype)
        planes[name] = np.packbits(step.numpy().astype(np.uint8), axis=1, bitorder="little")
        if len(members) == 1:  # all zero: the one member's codes are the base
            planes[name] = planes[name][:0]
    return SharedBase(
        fmt=first.fmt,
        methods=[m.method for m in members],
        seeds=[m.seed for m in members],
        base=base,
        planes=planes,
        scales={n: s.cpu() for n, s in first.scales.items()},
        kept={n: t.cpu() for n, t in first.kept.items()},
        transposed=first.transposed,
    )


def _mismatch(a: Member, b: Member) -> str:
    if (a.fmt.name, a.fmt.per_channel) != (b.fmt.name, b.fmt.per_channel):
        return f"format {b.fmt.name} is not {a.fmt.name}"
    if (
        a.codes.keys() != b.codes.keys()
        or a.kept.keys() != b.kept.keys()
        or (a.transposed != b.transposed)
    ):
        return "another set of tensors"
    for name in a.codes:
        if a.codes[name].shape != b.codes[name].shape:
            return f"{name} has shape {tuple(b.codes[name].shape)}"
        if not torch.equal(a.scales[name], b.scales[name]):
            return f"{name} has other scales (another checkpoint?)"
    for name in a.kept:
        if not torch.equal(a.kept[name], b.kept[name]):
            return f"kept tensor {name} differs (another checkpoint?)"
    return ""


def save_shared_base(path: str | Path, ensemble: SharedBase, provenance: Mapping[str, str]) -> int:
    """Write ``ensemble`` atomically as one safetensors file; return its counted bits."""
    tensors, metadata = to_tensors(ensemble)
    save_tensors(path, tensors, {**metadata, **provenance})
    return ensemble.bits


def to_tensors(ensemble: SharedBase) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``ensemble`` as the file's tensors and metadata (``docs/file_format.md``), without the
    checksums: what a file holds, and what ``LowPrecisionEnsemble.state_dict()`` carries."""
    shapes = {name: list(base.shape) for name, base in ensemble.base.items()}
    metadata = {
        "lpe_kind": ENSEMBLE_KIND,
        "format": ensemble.fmt.name,
        "per_channel": str(ensemble.fmt.per_channel),
        "methods": json.dumps(ensemble.methods),
        "seeds": json.dumps(ensemble.seeds),
        "shapes": json.dumps(shapes, sort_keys=True),
        "memory_bits": str(ensemble.bits),
        **transposed_metadata(ensemble.transposed),
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, base in ensemble.base.items():
        tensors[f"base/{name}"] = pack_indices(base, ensemble.fmt.code_bits)
        tensors[f"planes/{name}"] = torch.from_numpy(ensemble.planes[name])
        tensors[f"scales/{name}"] = stored_scales(ensemble.fmt, ensemble.scales[name])
    for name, t in ensemble.kept.items():
        tensors[f"fp32/{name}"] = t
    return tensors, metadata


def load_shared_base(path: str | Path) -> tuple[SharedBase, dict[str, str]]:
    """Read an ensemble file (checksum verified); return the ensemble and its metadata."""
    tensors, meta = load_tensors(path, "ensemble file")
    return from_tensors(tensors, meta, f"ensemble file {path}"), meta


def from_tensors(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str], where: str
) -> SharedBase:
    """The ensemble that :func:`to_tensors` wrote (``where`` names it in errors), its planes'
    shapes and counted bits checked against the metadata."""
    if meta.get("lpe_kind") != ENSEMBLE_KIND:
        raise ArtifactError(f"{where} is not an LPE ensemble (kind {meta.get('lpe_kind')!r})")
    fmt = get_format(meta["format"], per_channel=meta["per_channel"] == "True")
    shapes = json.loads(meta["shapes"])
    ensemble = SharedBase(
        fmt=fmt,
        methods=json.loads(meta["methods"]),
        seeds=json.loads(meta["seeds"]),
        base={n: unpack_indices(tensors[f"base/{n}"], fmt, tuple(s)) for n, s in shapes.items()},
        planes={n: tensors[f"planes/{n}"].numpy() for n in shapes},
        scales={n: loaded_scales(fmt, tensors[f"scales/{n}"]) for n in shapes},
        kept={k.removeprefix("fp32/"): v for k, v in tensors.items() if k.startswith("fp32/")},
        transposed=frozenset(json.loads(meta.get("transposed", "[]"))),
    )
    members = len(ensemble)
    for name, plane in ensemble.planes.items():
        expected = (members if members > 1 else 0, (int(np.prod(shapes[name])) + 7) // 8)
        if plane.shape != expected or plane.dtype != np.uint8:
            raise ArtifactError(f"{where}: planes/{name} is {plane.shape}, not {expected}")
    if ensemble.bits != int(meta["memory_bits"]):
        raise ArtifactError(f"{where}: stored bits disagree with its tensors")
    return ensemble
