"""docs/file_format.md is enough to read a shared-base ensemble file: a reader written from that
page alone (numpy, json, hashlib and the safetensors reader; nothing of lpe) decodes every
member's weights bit for bit as the library does, and reproduces both checksums and the counted
bits."""

import hashlib
import json
import math

import numpy as np
import pytest
import timm
import torch
from safetensors import safe_open

from lpe import LowPrecisionEnsemble
from lpe.formats.policy import QuantPolicy

# ---- the reader: from docs/file_format.md only -------------------------------------------------

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
       0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
       0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]  # fmt: skip
ELEMENTS = {"fp8_e4m3": (4, 3), "fp8_e5m2": (5, 2), "fp6_e2m3": (2, 3), "fp6_e3m2": (3, 2),
            "fp4_e2m1": (2, 1)}  # fmt: skip
MX = {"mxfp8_e4m3": "fp8_e4m3", "mxfp6_e2m3": "fp6_e2m3", "mxfp4": "fp4_e2m1"}


def code_width(name: str) -> int:
    digits = ""
    for ch in name.split("_")[0]:
        if ch.isdigit():
            digits += ch
    return int(digits)


def float_values(name: str) -> list[float]:
    e_bits, m_bits = ELEMENTS[name]
    bias = 2 ** (e_bits - 1) - 1
    values = set()
    for e in range(2**e_bits):
        if name == "fp8_e5m2" and e == 2**e_bits - 1:
            continue  # infinity and NaN
        for m in range(2**m_bits):
            if name == "fp8_e4m3" and e == 2**e_bits - 1 and m == 2**m_bits - 1:
                continue  # the one NaN pattern
            if e == 0:
                v = m * 2.0 ** (1 - bias - m_bits)
            else:
                v = (1 + m / 2**m_bits) * 2.0 ** (e - bias)
            values.add(np.float32(v))
    return sorted({-v for v in values} | values)


def grid(name: str) -> np.ndarray:
    if name in MX:
        name = MX[name]
    if name == "nf4":
        return np.array(NF4, dtype=np.float32)
    if name.startswith("int"):
        qmax = 2 ** (code_width(name) - 1) - 1
        return np.arange(-qmax, qmax + 1).astype(np.float32)
    return np.array(float_values(name), dtype=np.float32)


def unpack(data: np.ndarray, n: int, b: int) -> np.ndarray:
    bits = np.unpackbits(data, bitorder="little")[: n * b].reshape(n, b)
    return (bits.astype(np.int64) << np.arange(b)).sum(1)


def read(path):
    with safe_open(str(path), framework="np") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return tensors, meta


def member_weights(tensors, meta, m: int) -> dict[str, np.ndarray]:
    """Member m's weights: grid[base + plane_m] * scale, and the kept tensors."""
    name, b = meta["format"], code_width(meta["format"])
    values = grid(name)
    out = {}
    for tensor, shape in json.loads(meta["shapes"]).items():
        n = math.prod(shape)
        index = unpack(tensors[f"base/{tensor}"], n, b)
        planes = tensors[f"planes/{tensor}"]
        if planes.shape[0]:
            index = index + np.unpackbits(planes[m], count=n, bitorder="little")
        rows = shape[0]
        w = values[index].reshape(rows, -1)
        scales = tensors[f"scales/{tensor}"]
        if name in MX:
            per_block = np.exp2(scales.astype(np.float32) - 127)
            columns = np.arange(w.shape[1]) // 32
            w = w * per_block[:, columns]
        else:
            w = w * scales.astype(np.float32)  # (rows, 1) or (1, 1)
        out[tensor] = w.astype(np.float32).reshape(shape)
    for key, value in tensors.items():
        if key.startswith("fp32/"):
            out[key.removeprefix("fp32/")] = value
    return out


TORCH_DTYPES = {np.dtype(np.uint8): "torch.uint8", np.dtype(np.float32): "torch.float32"}


def tensors_checksum(tensors) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}|{TORCH_DTYPES[t.dtype]}|{tuple(t.shape)}|".encode())
        digest.update(t.astype(t.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def metadata_checksum(meta) -> str:
    body = {k: v for k, v in meta.items() if k != "lpe_metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def counted_bits(tensors, meta) -> int:
    b = code_width(meta["format"])
    scale_bits = 8 if meta["format"] in MX else 32
    bits = 0
    for tensor, shape in json.loads(meta["shapes"]).items():
        n = math.prod(shape)
        bits += 8 * math.ceil(n * b / 8) + 8 * tensors[f"planes/{tensor}"].size
        bits += scale_bits * tensors[f"scales/{tensor}"].size
    for key, value in tensors.items():
        if key.startswith("fp32/"):
            bits += 8 * value.itemsize * value.size
    return bits


# ---- the test ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, members, with_rtn, per_tensor",
    [("int5", 3, True, False), ("int12", 2, False, False), ("fp8_e4m3", 2, False, False),
     ("fp8_e5m2", 2, False, True), ("fp6_e3m2", 2, False, False), ("nf4", 3, False, False),
     ("mxfp4", 2, True, False), ("mxfp8_e4m3", 1, False, False)],
)  # fmt: skip
def test_a_reader_written_from_the_page_decodes_every_member(
    tmp_path, fmt, members, with_rtn, per_tensor
):
    from lpe.formats.number_formats import get_format

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=40,
        depth=1,
        num_heads=2,
        num_classes=3,
    )  # fmt: skip  (rows of 40 and 120: MX padding)
    policy = QuantPolicy(exclude=("head.*", "pos_embed", "cls_token"))  # the conv stem too
    number_format = get_format(fmt, per_channel=not per_tensor)
    ensemble = LowPrecisionEnsemble(model, number_format, members, seed=3, policy=policy,
                                    with_rtn=with_rtn)  # fmt: skip
    path = tmp_path / "e.safetensors"
    ensemble.save(path)

    tensors, meta = read(path)
    assert meta["lpe_kind"] == "lpe-shared-base-ensemble" and meta["format"] == fmt
    assert meta["per_channel"] == str(not per_tensor)
    methods = json.loads(meta["methods"])
    assert methods == ["rtn"] * with_rtn + ["bsr"] * members  # RTN first when stored
    assert tensors_checksum(tensors) == meta["lpe_sha256"]
    assert metadata_checksum(meta) == meta["lpe_metadata_sha256"]
    assert counted_bits(tensors, meta) == int(meta["memory_bits"])
    library = [ensemble.rtn()] * with_rtn + list(ensemble.members())
    for m, member in enumerate(library):
        mine = member_weights(tensors, meta, m)
        theirs = member.state_dict()
        assert mine.keys() == theirs.keys()
        for name, value in theirs.items():
            assert np.array_equal(mine[name], value.numpy()), (fmt, m, name)
