"""Fast kernels for LPE-BSR members: counter-based Bernoulli stochastic rounding and bit-packing.

Why not torch's generator: ``torch.rand`` on the CPU draws from one sequential Mersenne Twister
(about 50 M draws/s here) and a draw's value depends on how many draws came before it, so a
member would depend on tensor order and batching. Here every weight's uniform comes from a
counter-based generator instead: weight ``i`` of a tensor with key ``k`` uses the ``i``-th output
of SplitMix64 seeded with ``k`` (Steele et al., 2014), i.e. ``mix64(k + (i + 1) * GOLDEN)``. A
weight's draw depends only on (key, index), so the result is the same for any thread count, chunk
size, call order or device, and the work parallelises freely.

Rounding keeps the exact Bernoulli rule at float32 resolution, like ``torch.rand``: the top 24
bits of the hash give ``r`` in ``[0, 1)`` on a ``2**-24`` grid, and ``q = floor(u) + (r < frac(u))``
with ``u = w / s`` computed in float32.

CPU: numba kernels (numba compiles to parallel machine code, which torch cannot do for this
element-wise pipeline without ``torch.compile``'s tens of seconds of start-up per process).
CUDA: the same hash written with torch integer ops, bit-identical to the CPU kernel (tested).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
INV24 = np.float32(2.0**-24)


def keeping_threads(kernel, *args) -> None:
    """Run a parallel numba ``kernel`` and leave the caller's torch thread count as it was.

    numba's OpenMP threading layer, started by the first parallel kernel of a process, sets the
    process's OpenMP thread count to numba's (every core), and torch's with it: a program that
    ran torch on one thread found two after drawing one member, oversubscribed and 2x slower.
    numba's own count is left alone. The codes do not depend on either count (tested).
    """
    threads = torch.get_num_threads()
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def code_dtype(bits: int) -> np.dtype:
    """The narrowest signed integer type that holds INT-``bits`` codes."""
    return np.dtype(np.int8) if bits <= 8 else np.dtype(np.int16)


@numba.njit(inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


@numba.njit(parallel=True, cache=True)
def _bsr_rows(w, scales, qmax, key, out):
    """w: (rows, cols) float32; scales: (rows,) float32; out: (rows, cols) int8/int16."""
    rows, cols = w.shape
    qmax_f = np.float32(qmax)
    for row in numba.prange(rows):
        s = scales[row]
        base = np.uint64(key) + np.uint64(row) * np.uint64(cols) * np.uint64(GOLDEN)
        for j in range(cols):
            u = w[row, j] / s
            low = np.floor(u)
            # (i + 1)-th SplitMix64 state, i = row * cols + j
            h = _mix64(base + np.uint64(j + 1) * np.uint64(GOLDEN))
            r = np.float32(h >> np.uint64(40)) * INV24
            q = low + np.float32(1.0) if r < u - low else low
            out[row, j] = min(max(q, -qmax_f), qmax_f)


def bsr_codes(weight: torch.Tensor, scales: torch.Tensor, qmax: int, key: int) -> torch.Tensor:
    """BSR codes of ``weight`` (any shape, dim 0 = output channels) with per-row or per-tensor
    ``scales`` broadcastable to it; ``key`` (< 2**63) identifies the tensor's random stream.

    Returns int8 (b <= 8) or int16 codes of ``weight``'s shape, on ``weight``'s device.
    """
    bits = int(qmax + 1).bit_length()  # qmax + 1 = 2**(bits - 1)
    w = weight.detach().float()
    rows = w.shape[0] if w.dim() >= 1 else 1
    w2 = w.reshape(rows, -1)  # (out, in * kh * kw): one row per output channel
    s = torch.broadcast_to(scales.float().reshape(-1, *([1] * (w.dim() - 1))), w.shape)
    s_rows = s.reshape(rows, -1)[:, 0].contiguous()  # (out,): scales are constant along a row
    if w.device.type != "cpu":
        return _bsr_codes_torch(w2, s_rows, qmax, key, torch.int8 if bits <= 8 else torch.int16)
    out = np.empty(w2.shape, dtype=code_dtype(bits))
    keeping_threads(_bsr_rows, w2.contiguous().numpy(), s_rows.numpy(), qmax, np.uint64(key), out)
    return torch.from_numpy(out).reshape(weight.shape)


def _as_int64(value: int) -> int:
    """A 64-bit unsigned constant as the int64 with the same bits (for torch integer ops)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _srl(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (x >> shift) & ((1 << (64 - shift)) - 1)


def counter_uniforms(key: int, rows: int, cols: int, device) -> torch.Tensor:
    """The uniforms ``r`` of weights ``0 ... rows * cols - 1`` of the stream ``key``, as a
    (rows, cols) float32 tensor, with torch int64 ops (wrapping multiply), on any device."""
    index = torch.arange(rows * cols, device=device, dtype=torch.int64).reshape(rows, cols)
    z = _as_int64(key) + (index + 1) * _as_int64(GOLDEN)
    z = (z ^ _srl(z, 30)) * _as_int64(MIX1)
    z = (z ^ _srl(z, 27)) * _as_int64(MIX2)
    z = z ^ _srl(z, 31)
    return _srl(z, 40).float() * float(INV24)


def _bsr_codes_torch(w2, s_rows, qmax, key, dtype):
    """The same stream with torch int64 ops (wrapping multiply), for CUDA tensors."""
    rows, cols = w2.shape
    r = counter_uniforms(key, rows, cols, w2.device)
    u = w2 / s_rows[:, None]
    low = torch.floor(u)
    q = low + (r < u - low).float()
    return q.clamp_(-qmax, qmax).to(dtype)


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
