"""Bit-packing of integer codes at exactly ``bits`` bits per code.

Codes ``q`` in ``[-qmax, qmax]`` are stored offset as ``q + qmax`` in ``[0, 2**bits - 2]``, so
they fit ``bits`` bits. The layout is little-endian at the bit level: code ``i`` occupies stream
bits ``i*bits .. i*bits + bits - 1``, least significant bit first, and stream bit ``k`` is bit
``k % 8`` of byte ``k // 8``. ``n`` codes take ``ceil(n * bits / 8)`` bytes. The work is done by
the parallel numba kernels at the end of this module; the tests check them against plain numpy.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from lpe.core.runtime import keeping_threads


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes needed for ``numel`` codes at ``bits`` bits each."""
    return (numel * bits + 7) // 8


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack signed codes (any shape) into a flat uint8 tensor of ``packed_nbytes`` bytes."""
    qmax = 2 ** (bits - 1) - 1
    flat = codes.detach().cpu().reshape(-1).numpy()
    if flat.size and (flat.min() < -qmax or flat.max() > qmax):
        raise ValueError(f"codes outside [-{qmax}, {qmax}] cannot be packed at {bits} bits")
    return torch.from_numpy(pack(flat, bits, qmax))


def pack_indices(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack grid indices (``lpe.formats.number_formats``; unsigned, below ``2**bits``) into flat
    uint8.

    The stream is :func:`pack_codes`' layout with no offset, so INT-b's index ``q + qmax`` packs
    to the same bytes as its signed code ``q``.
    """
    flat = codes.detach().cpu().reshape(-1).numpy()
    if flat.size and int(flat.max()) >= 2**bits:
        raise ValueError(f"grid indices up to {int(flat.max())} cannot be packed at {bits} bits")
    return torch.from_numpy(pack(flat, bits, 0))


def unpack_indices(packed: torch.Tensor, fmt, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_indices` for a format ``fmt`` (its code width and index dtype)."""
    numel = int(np.prod(shape, dtype=np.int64))
    _check_size(packed, numel, fmt.code_bits)
    out = unpack(packed.numpy(), fmt.code_bits, 0, numel, dtype=fmt.code_dtype)
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
    return torch.from_numpy(unpack(packed.numpy(), bits, qmax, numel)).reshape(shape)


# ---- the parallel kernels: eight codes fill exactly ``bits`` bytes
def code_dtype(bits: int) -> np.dtype:
    """The narrowest signed integer type that holds INT-``bits`` codes."""
    return np.dtype(np.int8) if bits <= 8 else np.dtype(np.int16)


@numba.njit(parallel=True, cache=True)
def _pack(codes, bits, qmax, out):
    """codes: (n,) signed codes, stored as ``q + qmax`` in [0, 2**bits); out: ceil(n * bits / 8)
    bytes, little-endian.

    Eight codes fill exactly ``bits`` bytes, so groups of eight are packed in parallel; for
    bits <= 8 a group is assembled in one 64-bit word and written byte by byte.
    """
    n = codes.shape[0]
    nbytes = out.shape[0]
    for g in numba.prange((n + 7) // 8):
        pos = g * bits
        if bits <= 8 and g * 8 + 8 <= n:
            acc = np.uint64(0)
            for k in range(8):
                value = np.uint64(np.int64(codes[g * 8 + k]) + qmax)
                acc |= value << np.uint64(k * bits)
            for b in range(bits):
                out[pos + b] = np.uint8((acc >> np.uint64(8 * b)) & np.uint64(0xFF))
            continue
        acc = np.uint64(0)
        filled = 0
        for k in range(8):
            i = g * 8 + k
            if i < n:
                acc |= np.uint64(np.int64(codes[i]) + qmax) << np.uint64(filled)
            filled += bits
            while filled >= 8:
                if pos < nbytes:
                    out[pos] = np.uint8(acc & np.uint64(0xFF))
                acc >>= np.uint64(8)
                filled -= 8
                pos += 1


@numba.njit(parallel=True, cache=True)
def _unpack(packed, bits, qmax, out):
    n = out.shape[0]
    mask = np.uint64((1 << bits) - 1)
    nbytes = packed.shape[0]
    for g in numba.prange((n + 7) // 8):
        pos = g * bits
        if bits <= 8 and g * 8 + 8 <= n:
            acc = np.uint64(0)
            for b in range(bits):
                acc |= np.uint64(packed[pos + b]) << np.uint64(8 * b)
            for k in range(8):
                out[g * 8 + k] = np.int64((acc >> np.uint64(k * bits)) & mask) - qmax
            continue
        acc = np.uint64(0)
        filled = 0
        for k in range(8):
            while filled < bits:
                byte = packed[pos] if pos < nbytes else np.uint8(0)
                acc |= np.uint64(byte) << np.uint64(filled)
                filled += 8
                pos += 1
            i = g * 8 + k
            if i < n:
                out[i] = np.int64(acc & mask) - qmax
            acc >>= np.uint64(bits)
            filled -= bits


def pack(codes: np.ndarray, bits: int, qmax: int) -> np.ndarray:
    """Flat signed codes -> packed uint8 stream (offset ``q + qmax``)."""
    out = np.empty((codes.size * bits + 7) // 8, dtype=np.uint8)
    keeping_threads(_pack, np.ascontiguousarray(codes).reshape(-1), bits, qmax, out)
    return out


def unpack(packed: np.ndarray, bits: int, qmax: int, numel: int, dtype=None) -> np.ndarray:
    """Packed uint8 stream -> flat codes: signed (int8 or int16), or ``dtype`` (grid indices)."""
    out = np.empty(numel, dtype=code_dtype(bits) if dtype is None else dtype)
    keeping_threads(_unpack, packed, bits, qmax, out)
    return out
