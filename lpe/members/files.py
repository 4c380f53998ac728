"""Low precision ensemble members: rounding a full-precision state dict, and members as files.

A member is reproducible from (checkpoint, format, method, seed). Each quantized tensor draws its
randomness from its own counter-based stream (``lpe.formats.rounding``), keyed by the member seed
and the tensor's name, so a member does not depend on the order in which tensors are visited, on
which other tensors are quantized, on the thread count or on the device.

A member's number format is an ``lpe.formats.number_formats.NumberFormat``: its codes index the
format's grid of representable values (for INT-b, code ``q + qmax`` is the integer ``q``).

On disk (safetensors, see ``lpe.core.artifacts``), a member holds exactly what it needs:
``codes/<name>`` the codes bit-packed at the format's width (uint8 stream, ``lpe.formats.packing``),
``scales/<name>`` its scales (FP32, or E8M0 exponents for the MX formats), ``fp32/<name>`` the
tensors kept in full precision; the metadata records the format, method, seeds, shapes and the
checkpoint it came from. Its memory bits are counted from those tensors, so they agree with the
file size up to the safetensors header.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from lpe.core.artifacts import ArtifactError, load_tensors, save_tensors
from lpe.formats.number_formats import NumberFormat, get_format
from lpe.formats.packing import pack_indices, packed_nbytes, unpack_indices
from lpe.formats.policy import QuantPolicy, model_tensors
from lpe.formats.rounding import (
    dequantize,
    loaded_scales,
    round_nearest,
    round_stochastic,
    stored_scales,
)

METHODS = ("rtn", "bsr")
MEMBER_KIND = "lpe-member"


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across runs, platforms and Pythons)."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def member_seed(ensemble_seed: int, index: int) -> int:
    """Seed of member ``index`` of the BSR ensemble drawn with ``ensemble_seed``."""
    return derive_seed("member", ensemble_seed, index)


def tensor_key(seed: int, name: str) -> int:
    """Key of the random stream that rounds tensor ``name`` of the member with ``seed``."""
    return derive_seed("tensor", seed, name)


@dataclass
class Member:
    """One low precision member: codes and scales of the quantized tensors, plus the rest."""

    fmt: NumberFormat
    method: str
    seed: int
    codes: dict[str, torch.Tensor]  # name -> grid indices (unsigned), the tensor's shape
    scales: dict[str, torch.Tensor]  # name -> FP32 scales, (rows, 1), (1, 1) or (rows, blocks)
    kept: dict[str, torch.Tensor]  # name -> tensor kept in full precision
    # names whose codes are the model's tensor transposed (a weight stored (in, out), GPT-2's
    # Conv1D: rounded as (out, in) so that its scales are per output channel)
    transposed: frozenset[str] = frozenset()

    def weight(self, name: str, device=None) -> torch.Tensor:
        """Quantized tensor ``name`` dequantized (on ``device``), in the model's layout."""
        codes, scales = self.codes[name], self.scales[name]
        value = dequantize(
            self.fmt, codes.to(device or codes.device), scales.to(device or scales.device)
        )
        return value.t() if name in self.transposed else value

    @property
    def quantized_params(self) -> int:
        return sum(c.numel() for c in self.codes.values())

    @property
    def kept_params(self) -> int:
        return sum(t.numel() for t in self.kept.values())

    @property
    def bits(self) -> int:
        """Storage: the format's code width (packed per tensor), its scale width (FP32 or E8M0),
        dtype bits per kept value."""
        width = self.fmt.code_bits
        code_bits = sum(8 * packed_nbytes(c.numel(), width) for c in self.codes.values())
        scale_bits = sum(self.fmt.scale_bits * s.numel() for s in self.scales.values())
        kept_bits = sum(8 * t.element_size() * t.numel() for t in self.kept.values())
        return code_bits + scale_bits + kept_bits

    @torch.no_grad()
    def load_into(self, model: torch.nn.Module) -> None:
        """Write the member's weights into ``model`` in place, one tensor at a time.

        Unlike ``model.load_state_dict(member.state_dict())`` this never holds a second full set
        of FP32 weights: the extra memory is one dequantized tensor. Every tensor of the model's
        state must be covered by the member (a mismatch is an error, as with ``strict=True``).
        """
        self.write_into(self.state_of(model))

    def state_of(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``model.state_dict(keep_vars=True)``, refusing a model whose tensors are not exactly
        the member's (as ``load_state_dict(strict=True)`` would)."""
        target = model_tensors(model, keep_vars=True)
        names = set(self.codes) | set(self.kept)
        if names != set(target):
            missing, unexpected = sorted(set(target) - names), sorted(names - set(target))
            raise ValueError(
                f"member does not match the model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        return target

    @torch.no_grad()
    def write_into(self, target: Mapping[str, torch.Tensor]) -> None:
        """Copy the member's tensors into ``target``'s tensors of the same names (cast to their
        dtype and device); names the member does not hold are left alone."""
        for name in self.codes:
            target[name].copy_(self.weight(name))
        for name, t in self.kept.items():
            target[name].copy_(t)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The FP32 weights the member runs with (dequantized codes plus kept tensors)."""
        state = {n: self.weight(n) for n in self.codes}
        state.update(self.kept)
        return state


def quantize(
    state: Mapping[str, torch.Tensor],
    fmt: NumberFormat,
    method: str,
    seed: int = 0,
    policy: QuantPolicy | None = None,
) -> Member:
    """Round ``state`` to ``fmt`` with ``method`` ('rtn' or 'bsr'); ``seed`` drives BSR only.

    Scales come from the full-precision weights, so all members of one format share them.
    """
    if method not in METHODS:
        raise ValueError(f"unknown rounding method {method!r}; allowed: {', '.join(METHODS)}")
    policy = policy or QuantPolicy()
    codes, scales, kept = {}, {}, {}
    for name, tensor in state.items():
        if not policy.quantizes(name, tensor):
            kept[name] = tensor.detach().clone()
            continue
        if method == "rtn":
            codes[name], scales[name] = round_nearest(fmt, tensor)
        else:
            codes[name], scales[name] = round_stochastic(fmt, tensor, tensor_key(seed, name))
    return Member(fmt=fmt, method=method, seed=seed, codes=codes, scales=scales, kept=kept)


def save_member(path: str | Path, member: Member, provenance: Mapping[str, str]) -> int:
    """Write ``member`` atomically; return its memory bits. ``provenance``: e.g. checkpoint hash."""
    shapes = {name: list(q.shape) for name, q in member.codes.items()}
    metadata = {
        "lpe_kind": MEMBER_KIND,
        "format": member.fmt.name,
        "bits": str(member.fmt.code_bits),
        "per_channel": str(member.fmt.per_channel),
        "method": member.method,
        "seed": str(member.seed),
        "shapes": json.dumps(shapes, sort_keys=True),
        "memory_bits": str(member.bits),
        **transposed_metadata(member.transposed),
        **provenance,
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, q in member.codes.items():
        tensors[f"codes/{name}"] = pack_indices(q, member.fmt.code_bits)
        tensors[f"scales/{name}"] = stored_scales(member.fmt, member.scales[name])
    for name, t in member.kept.items():
        tensors[f"fp32/{name}"] = t
    save_tensors(path, tensors, metadata)
    return member.bits


def transposed_metadata(transposed: frozenset[str]) -> dict[str, str]:
    """The file metadata that lists the tensors stored transposed (none: no key, so that files
    of models without such weights are as they always were)."""
    return {"transposed": json.dumps(sorted(transposed))} if transposed else {}


def load_member(path: str | Path) -> tuple[Member, dict[str, str]]:
    """Read a member file (checksum verified); return the member and its metadata."""
    tensors, meta = load_tensors(path, "member file")
    if meta.get("lpe_kind") != MEMBER_KIND:
        raise ArtifactError(f"{path} is not an LPE member file (kind {meta.get('lpe_kind')!r}).")
    fmt = get_format(meta["format"], per_channel=meta["per_channel"] == "True")
    shapes = json.loads(meta["shapes"])
    codes = {n: unpack_indices(tensors[f"codes/{n}"], fmt, tuple(s)) for n, s in shapes.items()}
    scales = {n: loaded_scales(fmt, tensors[f"scales/{n}"]) for n in shapes}
    kept = {k.removeprefix("fp32/"): v for k, v in tensors.items() if k.startswith("fp32/")}
    transposed = frozenset(json.loads(meta.get("transposed", "[]")))
    member = Member(fmt, meta["method"], int(meta["seed"]), codes, scales, kept, transposed)
    if member.bits != int(meta["memory_bits"]):
        raise ArtifactError(f"member file {path}: stored bits disagree with its tensors")
    return member, meta


def load_member_of(path: str | Path, checkpoint: str | Path, checkpoint_sha256: str) -> Member:
    """A member file, accepted only when it was made from this checkpoint (its recorded hash)."""
    member, meta = load_member(path)
    require_made_from(meta, f"member file {path}", checkpoint, checkpoint_sha256)
    return member


def require_made_from(meta: dict, what: str, checkpoint, checkpoint_sha256: str) -> None:
    """Refuse a file (``what``) whose metadata records another checkpoint's hash."""
    made_from = meta.get("checkpoint_sha256", "")
    if made_from != checkpoint_sha256:
        raise ArtifactError(
            f"{what} was made from another checkpoint (sha256 {made_from[:12]}...) "
            f"than {checkpoint} ({checkpoint_sha256[:12]}...); delete its folder and rerun"
        )
