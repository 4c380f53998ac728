import pytest
import torch

from lpe.formats.packing import pack_codes, packed_nbytes, unpack_codes


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (13, 3, 1, 3), (0,)])
def test_packing_round_trips(bits, shape):
    qmax = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(-qmax, qmax + 1, shape, generator=g, dtype=torch.int32)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_nbytes(codes.numel(), bits)
    assert torch.equal(unpack_codes(packed, bits, shape), codes)


@pytest.mark.parametrize("bits", [12, 16])
def test_packing_round_trips_wide_codes(bits):
    qmax = 2 ** (bits - 1) - 1
    codes = torch.tensor([-qmax, -1, 0, 1, qmax, 5], dtype=torch.int32)
    assert torch.equal(unpack_codes(pack_codes(codes, bits), bits, (6,)), codes)


def test_packed_size_is_exactly_bits_per_code():
    assert packed_nbytes(8, 4) == 4
    assert packed_nbytes(3, 5) == 2  # 15 bits -> 2 bytes
    assert packed_nbytes(1001, 3) == 376  # ceil(3003 / 8)


def test_packing_layout_is_little_endian():
    # code 1 at 2 bits is stored as offset 1 + 1 = 2 = 0b10; four codes fill one byte
    codes = torch.tensor([1, -1, 0, 1], dtype=torch.int32)  # offsets 2, 0, 1, 2
    assert pack_codes(codes, 2).tolist() == [2 | 0 << 2 | 1 << 4 | 2 << 6]


def test_packing_refuses_codes_off_the_grid():
    with pytest.raises(ValueError, match="outside"):
        pack_codes(torch.tensor([8], dtype=torch.int32), 4)


def test_unpacking_refuses_a_stream_of_the_wrong_length():
    with pytest.raises(ValueError, match="expected"):
        unpack_codes(torch.zeros(3, dtype=torch.uint8), 4, (10,))
