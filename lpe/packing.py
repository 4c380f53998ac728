"""Bit-packing of integer codes at exactly ``bits`` bits per code.

Codes ``q`` in ``[-qmax, qmax]`` are stored offset as ``q + qmax`` in ``[0, 2**bits - 2]``, so
they fit ``bits`` bits. The layout is little-endian at the bit level: code ``i`` occupies stream
bits ``i*bits .. i*bits + bits - 1``, least significant bit first; the stream is cut into bytes
with ``numpy.packbits(bitorder="little")``. ``n`` codes take ``ceil(n * bits / 8)`` bytes.

numpy's packbits is used rather than a torch expression because torch has no bit-level packing
primitive; this route is simple and fast enough for the mini profile (see issue 5 for speed).
"""

from __future__ import annotations

import numpy as np
import torch


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes needed for ``numel`` codes at ``bits`` bits each."""
    return (numel * bits + 7) // 8


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack signed codes (any shape) into a flat uint8 tensor of ``packed_nbytes`` bytes."""
    qmax = 2 ** (bits - 1) - 1
    flat = codes.detach().cpu().reshape(-1).to(torch.int64).numpy()
    if flat.size and (flat.min() < -qmax or flat.max() > qmax):
        raise ValueError(f"codes outside [-{qmax}, {qmax}] cannot be packed at {bits} bits")
    offset = (flat + qmax).astype(np.uint32)
    # (n, bits) matrix of bits, least significant first
    planes = ((offset[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    packed = np.packbits(planes.reshape(-1), bitorder="little")
    return torch.from_numpy(packed)


def unpack_codes(packed: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int32 codes of the given shape."""
    numel = int(np.prod(shape, dtype=np.int64))
    expected = packed_nbytes(numel, bits)
    if packed.numel() != expected:
        raise ValueError(
            f"packed stream has {packed.numel()} bytes, expected {expected} "
            f"for {numel} codes at {bits} bits"
        )
    stream = np.unpackbits(packed.numpy(), count=numel * bits, bitorder="little")
    planes = stream.reshape(numel, bits).astype(np.int64)  # (n, bits), LSB first
    offset = planes @ (1 << np.arange(bits, dtype=np.int64))
    qmax = 2 ** (bits - 1) - 1
    return torch.from_numpy((offset - qmax).astype(np.int32)).reshape(shape)
