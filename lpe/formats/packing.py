"""Bit-packing of integer codes at exactly ``bits`` bits per code.

Codes ``q`` in ``[-qmax, qmax]`` are stored offset as ``q + qmax`` in ``[0, 2**bits - 2]``, so
they fit ``bits`` bits. The layout is little-endian at the bit level: code ``i`` occupies stream
bits ``i*bits .. i*bits + bits - 1``, least significant bit first, and stream bit ``k`` is bit
``k % 8`` of byte ``k // 8``. ``n`` codes take ``ceil(n * bits / 8)`` bytes. The work is done by
the parallel kernels of ``lpe.formats.kernels``; the tests check them against a plain numpy version.
"""

from __future__ import annotations

import numpy as np
import torch

from lpe.formats import kernels


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes needed for ``numel`` codes at ``bits`` bits each."""
    return (numel * bits + 7) // 8


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack signed codes (any shape) into a flat uint8 tensor of ``packed_nbytes`` bytes."""
    qmax = 2 ** (bits - 1) - 1
    flat = codes.detach().cpu().reshape(-1).numpy()
    if flat.size and (flat.min() < -qmax or flat.max() > qmax):
        raise ValueError(f"codes outside [-{qmax}, {qmax}] cannot be packed at {bits} bits")
    return torch.from_numpy(kernels.pack(flat, bits, qmax))


def pack_indices(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack grid indices (``lpe.formats.registry``; unsigned, below ``2**bits``) into flat uint8.

    The stream is :func:`pack_codes`' layout with no offset, so INT-b's index ``q + qmax`` packs
    to the same bytes as its signed code ``q``.
    """
    flat = codes.detach().cpu().reshape(-1).numpy()
    if flat.size and int(flat.max()) >= 2**bits:
        raise ValueError(f"grid indices up to {int(flat.max())} cannot be packed at {bits} bits")
    return torch.from_numpy(kernels.pack(flat, bits, 0))


def unpack_indices(packed: torch.Tensor, fmt, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_indices` for a format ``fmt`` (its code width and index dtype)."""
    numel = int(np.prod(shape, dtype=np.int64))
    _check_size(packed, numel, fmt.code_bits)
    out = kernels.unpack(packed.numpy(), fmt.code_bits, 0, numel, dtype=fmt.code_dtype)
    return torch.from_numpy(out).reshape(shape)


def _check_size(packed: torch.Tensor, numel: int, bits: int) -> None:
    expected = packed_nbytes(numel, bits)
    if packed.numel() != expected:
        raise ValueError(
            f"packed stream has {packed.numel()} bytes, expected {expected} "
            f"for {numel} codes at {bits} bits"
        )


def unpack_codes(packed: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int8 (bits <= 8) or int16 codes of the given shape."""
    numel = int(np.prod(shape, dtype=np.int64))
    _check_size(packed, numel, bits)
    qmax = 2 ** (bits - 1) - 1
    return torch.from_numpy(kernels.unpack(packed.numpy(), bits, qmax, numel)).reshape(shape)
