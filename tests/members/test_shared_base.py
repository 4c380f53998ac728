"""An ensemble as a shared base plus one bit-plane per member: every member of every registered
format decodes bit for bit, the file holds what it counts, and what is not one ensemble is
refused."""

import pytest
import torch

from lpe.core.artifacts import ArtifactError
from lpe.formats.names import CATALOGUE
from lpe.formats.number_formats import get_format
from lpe.members.files import load_member, member_seed, quantize, save_member
from lpe.members.shared_base import encode, load_shared_base, save_shared_base

MEMBERS = 4  # BSR members, plus the RTN member


def members_of(state, fmt, seed=0):
    bsr = [quantize(state, fmt, "bsr", member_seed(seed, k)) for k in range(MEMBERS)]
    return [quantize(state, fmt, "rtn"), *bsr]


def assert_same_member(a, b):
    assert (a.fmt.name, a.method, a.seed, a.bits) == (b.fmt.name, b.method, b.seed, b.bits)
    assert a.codes.keys() == b.codes.keys() and a.kept.keys() == b.kept.keys()
    for name in a.codes:
        assert a.codes[name].dtype == b.codes[name].dtype, name
        assert torch.equal(a.codes[name], b.codes[name]), name
        assert torch.equal(a.scales[name], b.scales[name]), name
    for name in a.kept:
        assert torch.equal(a.kept[name], b.kept[name]), name


@pytest.mark.parametrize("name", [*CATALOGUE, "int12"])  # int12: 16-bit codes
def test_every_member_of_every_format_round_trips_bit_for_bit(tmp_path, vit_state, name):
    fmt = get_format(name)
    members = members_of(vit_state, fmt)
    path = tmp_path / "ensemble.safetensors"
    bits = save_shared_base(path, encode(members), {"checkpoint_sha256": "abc"})
    ensemble, meta = load_shared_base(path)
    assert meta["checkpoint_sha256"] == "abc" and len(ensemble) == len(members)
    for m, member in enumerate(members):
        decoded = ensemble.member(m)
        assert_same_member(decoded, member)
        # the decoded member is the member file's member too, bit for bit
        save_member(tmp_path / f"m{m}.safetensors", decoded, {})
        save_member(tmp_path / f"o{m}.safetensors", member, {})
        assert_same_member(load_member(tmp_path / f"m{m}.safetensors")[0],
                           load_member(tmp_path / f"o{m}.safetensors")[0])  # fmt: skip
    # the file holds what it counts, plus its header (names, shapes, checksums)
    header = path.stat().st_size - bits // 8
    assert 0 < header < 64 * 1024
    # b + M bits per quantized weight and the FP32 tensors once, against M full members
    assert bits < sum(member.bits for member in members)


def test_the_shared_base_costs_b_plus_m_bits_per_quantized_weight(vit_state):
    fmt = get_format("int5")
    members = members_of(vit_state, fmt)
    ensemble = encode(members)
    quantized = sum(c.numel() for c in members[0].codes.values())
    once = members[0].bits - sum(
        8 * ((c.numel() * fmt.code_bits + 7) // 8) for c in members[0].codes.values()
    )  # scales and kept tensors
    per_weight = (ensemble.bits - once) / quantized
    assert fmt.code_bits + len(members) <= per_weight < fmt.code_bits + len(members) + 0.1
    # one member stored alone (the paper's accounting), counted without decoding any
    assert ensemble.member_file_bits == members[0].bits == ensemble.member(1).bits


@pytest.mark.parametrize("method", ["rtn", "bsr"])
def test_one_member_is_stored_as_itself(tmp_path, vit_state, method):
    """No plane: the shared-base file of one member costs its member file's bits (and decodes to
    it)."""
    member = quantize(vit_state, get_format("int4"), method, seed=3)
    path = tmp_path / "one.safetensors"
    assert save_shared_base(path, encode([member]), {}) == member.bits
    ensemble, _ = load_shared_base(path)
    assert ensemble.member_bits() == [member.bits]
    decoded = ensemble.member(0)
    assert all(decoded.codes[n].equal(c) for n, c in member.codes.items())


def test_members_that_are_not_one_ensemble_are_refused(vit_state):
    fmt = get_format("int4")
    other = {k: v * 1.5 for k, v in vit_state.items()}  # another checkpoint: other scales
    with pytest.raises(ValueError, match="member 1 cannot share member 0's base: .*other scales"):
        encode([quantize(vit_state, fmt, "rtn"), quantize(other, fmt, "rtn")])
    with pytest.raises(ValueError, match="format int6 is not int4"):
        encode([quantize(vit_state, fmt, "rtn"), quantize(vit_state, get_format("int6"), "rtn")])
    far = quantize(vit_state, fmt, "rtn")
    name = next(iter(far.codes))
    far.codes[name] = far.codes[name].clone()
    far.codes[name].view(-1)[0] += 2  # two grid steps from the RTN member's code
    with pytest.raises(ValueError, match="differ by up to 2 grid steps"):
        encode([quantize(vit_state, fmt, "rtn"), far])
    with pytest.raises(ValueError, match="at least one member"):
        encode([])


def test_a_tampered_file_is_refused(tmp_path, vit_state):
    path = tmp_path / "e.safetensors"
    save_shared_base(path, encode(members_of(vit_state, get_format("int4"))), {})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        load_shared_base(path)
