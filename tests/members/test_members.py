import struct

import pytest
import torch

from lpe.core.artifacts import ArtifactError
from lpe.formats.number_formats import get_format, int_format
from lpe.formats.packing import pack_codes, pack_indices
from lpe.formats.policy import QuantPolicy
from lpe.members.files import load_member, member_seed, quantize, save_member


def test_same_seed_same_member_other_seed_other_member(vit_state):
    fmt = int_format(4)
    a = quantize(vit_state, fmt, "bsr", seed=member_seed(0, 0))
    b = quantize(vit_state, fmt, "bsr", seed=member_seed(0, 0))
    c = quantize(vit_state, fmt, "bsr", seed=member_seed(0, 1))
    d = quantize(vit_state, fmt, "bsr", seed=member_seed(1, 0))
    for name in a.codes:
        assert torch.equal(a.codes[name], b.codes[name])
    assert any(not torch.equal(a.codes[n], c.codes[n]) for n in a.codes)
    assert any(not torch.equal(a.codes[n], d.codes[n]) for n in a.codes)


def test_member_does_not_depend_on_tensor_order(vit_state):
    fmt = int_format(5)
    reversed_state = dict(reversed(list(vit_state.items())))
    a = quantize(vit_state, fmt, "bsr", seed=3)
    b = quantize(reversed_state, fmt, "bsr", seed=3)
    for name in a.codes:
        assert torch.equal(a.codes[name], b.codes[name])


def test_excluded_tensors_stay_bit_identical(vit_state):
    member = quantize(vit_state, int_format(2), "bsr", seed=0)
    summary = QuantPolicy().split(vit_state)
    assert set(member.kept) == set(summary.kept)
    state = member.state_dict()
    for name in summary.kept:
        assert torch.equal(state[name], vit_state[name])
    for name in summary.quantized:
        assert not torch.equal(state[name], vit_state[name])


def test_rtn_member_is_deterministic_and_ignores_seed(vit_state):
    a = quantize(vit_state, int_format(4), "rtn", seed=0)
    b = quantize(vit_state, int_format(4), "rtn", seed=99)
    assert all(torch.equal(a.codes[n], b.codes[n]) for n in a.codes)


def test_unknown_method_is_refused(vit_state):
    with pytest.raises(ValueError, match="rtn, bsr"):
        quantize(vit_state, int_format(4), "sr")


@pytest.mark.parametrize("name", ["int3", "int4", "int6", "fp8_e4m3", "fp6_e3m2", "nf4", "mxfp4"])
def test_member_file_round_trips_and_its_size_matches_its_bits(tmp_path, vit_state, name):
    fmt = get_format(name)
    member = quantize(vit_state, fmt, "bsr", seed=5)
    path = tmp_path / "m.safetensors"
    stored_bits = save_member(path, member, {"checkpoint_sha256": "x"})
    loaded, meta = load_member(path)
    assert stored_bits == member.bits == int(meta["memory_bits"])
    for name in member.codes:
        assert torch.equal(loaded.codes[name], member.codes[name])
        assert torch.equal(loaded.scales[name], member.scales[name])
    for name, tensor in member.kept.items():
        assert torch.equal(loaded.kept[name], tensor)
    # file = 8-byte header length + JSON header + exactly the bytes the bits account for
    raw = path.read_bytes()
    (header,) = struct.unpack("<Q", raw[:8])
    assert len(raw) == 8 + header + stored_bits // 8
    assert header < 0.05 * len(raw) + 16_384  # "a small header"
    # memory bits: the code width per quantized value (packed per tensor), 32 per FP32 scale or
    # 8 per E8M0 scale, 32 per kept value
    expected = (
        member.quantized_params * fmt.code_bits
        + (32 if fmt.block is None else 8) * sum(s.numel() for s in member.scales.values())
        + 32 * member.kept_params
    )
    assert 0 <= stored_bits - expected < 8 * len(member.codes)
    for key, tensor in member.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor)


def test_int_codes_pack_to_the_signed_codes_bytes(vit_state):
    """An INT-b member stores the same code stream as before the format objects (q + qmax)."""
    member = quantize(vit_state, int_format(4), "rtn")
    for q in member.codes.values():
        assert torch.equal(pack_indices(q, 4), pack_codes(q.int() - 7, 4))


def test_truncated_member_file_names_the_file(tmp_path, vit_state):
    path = tmp_path / "m.safetensors"
    save_member(path, quantize(vit_state, int_format(4), "bsr", seed=1), {})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match=r"m\.safetensors.*truncated or corrupted"):
        load_member(path)


def test_corrupted_member_file_is_refused(tmp_path, vit_state):
    path = tmp_path / "m.safetensors"
    save_member(path, quantize(vit_state, int_format(4), "bsr", seed=1), {})
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # flip bits inside a tensor: the header still parses
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        load_member(path)


def test_missing_member_file_says_how_to_create_it(tmp_path):
    with pytest.raises(ArtifactError, match="Run the workflow"):
        load_member(tmp_path / "absent.safetensors")
