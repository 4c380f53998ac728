"""A number format applied to tensors: scales, rounding onto the grid (RTN and BSR, and their
kernels), dequantization, and scales as files store them.

The formats themselves (a name, a grid, a rule for the scales: descriptions only) are
:mod:`lpe.formats.number_formats`; bit-packing the codes is :mod:`lpe.formats.packing`.

RTN is the nearest grid value, ties to the even magnitude index, which is round-half-to-even for
INT-b and for the float formats (neighbouring floats alternate their last mantissa bit). BSR draws
one of the two neighbours ``lo <= u <= hi``, ``hi`` with probability ``(u - lo) / (hi - lo)``, so
``E[scale * value] = w`` inside the grid's range (a weight beyond it is clamped to the end). On an
integer grid the rule is exactly INT-b's ``floor(u) + (r < frac(u))``, and so are the codes
(tested): INT-b takes the branch-free ``bsr_codes`` kernel, any other grid a binary search.

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

from lpe.core.runtime import keeping_threads
from lpe.formats.number_formats import NumberFormat
from lpe.formats.packing import code_dtype


# ---- scales, unit values, dequantization: the tensor side of a format
def as_rows(weight: torch.Tensor) -> torch.Tensor:
    w = weight.detach().float()
    return w.reshape(w.shape[0] if w.dim() >= 1 else 1, -1)


def _blocked(w2: torch.Tensor, block: int) -> torch.Tensor:
    """(rows, cols) -> (rows, blocks, block), the last block padded with zeros."""
    rows, cols = w2.shape
    pad = -cols % block
    return torch.nn.functional.pad(w2, (0, pad)).reshape(rows, -1, block)


def format_scales(fmt: NumberFormat, weight: torch.Tensor) -> torch.Tensor:
    """``fmt``'s FP32 scales of ``weight``: one per row (``(rows, 1)``), per tensor (``(1, 1)``)
    or per block (``(rows, blocks)``)."""
    w2 = as_rows(weight)
    if fmt.block is None:
        absmax = w2.abs().amax(dim=1, keepdim=True) if fmt.per_channel else w2.abs().amax()
        absmax = absmax.reshape(-1, 1)
        scales = absmax / fmt.max_value
        return torch.where(scales > 0, scales, torch.ones_like(scales))
    blocks = _blocked(w2, fmt.block).abs().amax(dim=2)  # (rows, blocks)
    exponent = torch.floor(torch.log2(blocks)) - fmt.emax
    exponent = torch.where(blocks > 0, exponent, torch.zeros_like(exponent))
    # E8M0 holds 2**-127 ... 2**127
    return torch.exp2(exponent.clamp(-127, 127))


def unit_values(fmt: NumberFormat, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``w / scale`` per weight, as a (rows, row_length) float32 tensor."""
    w2 = as_rows(weight)
    if fmt.block is None:
        return w2 / scales
    per_weight = scales.repeat_interleave(fmt.block, dim=1)[:, : w2.shape[1]]
    return w2 / per_weight


def dequantize(fmt: NumberFormat, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The FP32 weight a member runs with: ``scale * grid[code]``."""
    grid = torch.as_tensor(fmt.grid, device=codes.device)
    values = grid[codes.reshape(codes.shape[0], -1).long()]
    if fmt.block is None:
        return (values * scales).reshape(codes.shape)
    per_weight = scales.repeat_interleave(fmt.block, dim=1)[:, : values.shape[1]]
    return (values * per_weight).reshape(codes.shape)


def stored_scales(fmt: NumberFormat, scales: torch.Tensor) -> torch.Tensor:
    """Scales as a member file stores them: FP32, or MX's E8M0 exponents (uint8, e + 127)."""
    if fmt.block is None:
        return scales.float()
    return (torch.log2(scales).round() + 127).to(torch.uint8)


def loaded_scales(fmt: NumberFormat, stored: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`stored_scales`, as (rows, 1), (1, 1) or (rows, blocks)."""
    if fmt.block is None:
        return stored
    return torch.exp2(stored.float() - 127)


GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
INV24 = np.float32(2.0**-24)


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


# ---- INT-b's reference expressions (torch's generator): Figure 1's sketch, and what the tests
# and benchmarks hold the kernels against
def rtn_reference(weight: torch.Tensor, scales: torch.Tensor, qmax: int) -> torch.Tensor:
    """RTN on INT-b: the nearest code, ``clip(round(w / s))``, as int32 (ties to even, as
    torch.round)."""
    u = weight.detach().float() / scales
    return torch.round(u).clamp_(-qmax, qmax).to(torch.int32)


def bsr_reference(
    weight: torch.Tensor, scales: torch.Tensor, qmax: int, generator: torch.Generator
) -> torch.Tensor:
    """BSR on INT-b: ``q = floor(u) + Bernoulli(u - floor(u))`` with ``u = w / s``, so
    ``E[s q] = w``.

    Every weight is rounded independently with one uniform draw from ``generator`` (which must
    live on ``weight``'s device). The clip only guards against ``u`` exceeding ``qmax`` by a
    floating-point ulp at the channel maximum; it never moves an unbiased draw.
    """
    u = weight.detach().float() / scales
    low = torch.floor(u)
    draws = torch.rand(u.shape, generator=generator, device=u.device, dtype=u.dtype)
    q = low + (draws < (u - low)).to(u.dtype)
    return q.clamp_(-qmax, qmax).to(torch.int32)


# ---- any format's grid: RTN and BSR by grid search (CPU kernels), and with torch ops (CUDA)
def round_nearest(fmt: NumberFormat, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RTN: (codes, scales); ``codes`` index the grid (uint8/uint16, weight's shape)."""
    return _round(fmt, weight, stochastic=False, key=0)


def round_stochastic(
    fmt: NumberFormat, weight: torch.Tensor, key: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """BSR: (codes, scales) drawn from the counter-based stream with ``key`` (< 2**63)."""
    return _round(fmt, weight, stochastic=True, key=key)


def _round(
    fmt: NumberFormat, weight, stochastic: bool, key: int
) -> tuple[torch.Tensor, torch.Tensor]:
    scales = format_scales(fmt, weight)
    if weight.device.type != "cpu":
        codes = _round_torch(fmt, as_rows(weight), scales, stochastic, key)
        return codes.reshape(weight.shape), scales
    if stochastic and fmt.integer_grid and fmt.block is None:
        # INT-b: bsr_codes' branch-free floor kernel (a grid search costs ~4x more).
        # Its signed codes q are this grid's indices q + qmax (tested): reinterpreted as
        # unsigned and offset in place, since two's complement wraps q + qmax into 0 ... 2 qmax.
        qmax = int(fmt.grid[-1])
        codes = bsr_codes(weight, scales, qmax, key).numpy()
        indices = codes.view(fmt.code_dtype)  # int8 -> uint8, int16 -> uint16
        indices += indices.dtype.type(qmax)
        return torch.from_numpy(indices), scales
    w2 = as_rows(weight).contiguous().numpy()
    out = np.empty(w2.shape, dtype=fmt.code_dtype)
    zero = int(np.flatnonzero(fmt.grid == 0)[0])
    block = fmt.block or w2.shape[1]
    scales_np = scales.expand(w2.shape[0], -1).contiguous().numpy()  # per tensor: each row
    keeping_threads(
        _round_rows, w2, scales_np, block, fmt.grid, zero, stochastic, np.uint64(key), out
    )
    return torch.from_numpy(out).reshape(weight.shape), scales


def lower_codes(fmt: NumberFormat, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Per weight, the index of the lower of the two grid neighbours of ``w / s`` (clamped
    to ``0 ... len(grid) - 2``): every RTN or BSR code of the weight is this index or the
    next one (a weight beyond the grid's ends rounds to an end, still one of the two). The
    base of a shared-base ensemble (``lpe.members.shared_base``), from the weights alone."""
    if weight.device.type != "cpu":
        u = unit_values(fmt, weight, scales).contiguous()
        grid = torch.as_tensor(fmt.grid, device=u.device)
        lower = (torch.searchsorted(grid, u, right=True) - 1).clamp_(0, len(grid) - 2)
        return torch.from_numpy(lower.reshape(weight.shape).cpu().numpy().astype(fmt.code_dtype))
    w2 = as_rows(weight).contiguous().numpy()
    out = np.empty(w2.shape, dtype=fmt.code_dtype)
    scales_np = scales.expand(w2.shape[0], -1).contiguous().numpy()
    keeping_threads(_lower_rows, w2, scales_np, fmt.block or w2.shape[1], fmt.grid, out)
    return torch.from_numpy(out).reshape(weight.shape)


@numba.njit(cache=True)
def _lower_index(grid, u):
    """Index of the largest grid value <= u (0 below the grid, len - 1 above)."""
    lo, hi = 0, len(grid) - 1
    if u <= grid[0]:
        return 0
    if u >= grid[hi]:
        return hi
    while hi - lo > 1:  # invariant: grid[lo] <= u < grid[hi]
        mid = (lo + hi) // 2
        if grid[mid] <= u:
            lo = mid
        else:
            hi = mid
    return lo


@numba.njit(parallel=True, cache=True)
def _round_rows(w, scales, block, grid, zero, stochastic, key, out):
    """Codes of ``w`` (rows, cols) with ``scales`` (rows, blocks), ``block`` weights per scale.

    RTN: the nearest grid value, ties to the even magnitude index (``zero`` is 0.0's index).
    BSR: weight ``i = row * cols + j`` draws the ``(i + 1)``-th output of SplitMix64 seeded with
    ``key``, as lpe.formats.rounding does for INT-b, and takes the upper neighbour when ``r < p``.
    """
    rows, cols = w.shape
    n = len(grid)
    for row in numba.prange(rows):
        base = key + np.uint64(row) * np.uint64(cols) * np.uint64(GOLDEN)
        for start in range(0, cols, block):  # one scale per block (no division per weight)
            s = scales[row, start // block]
            for j in range(start, min(start + block, cols)):
                x = w[row, j] / s
                lo = _lower_index(grid, x)
                if lo == n - 1 or x <= grid[0]:  # at or beyond an end: clamped
                    out[row, j] = lo
                elif stochastic:
                    h = _mix64(base + np.uint64(j + 1) * np.uint64(GOLDEN))
                    r = np.float32(h >> np.uint64(40)) * INV24
                    p = (x - grid[lo]) / (grid[lo + 1] - grid[lo])
                    out[row, j] = lo + 1 if r < p else lo
                else:
                    below, above = x - grid[lo], grid[lo + 1] - x
                    if below < above:
                        out[row, j] = lo
                    elif above < below:
                        out[row, j] = lo + 1
                    else:  # a tie: the neighbour whose magnitude index is even
                        out[row, j] = lo if abs(lo - zero) % 2 == 0 else lo + 1


@numba.njit(parallel=True, cache=True)
def _lower_rows(w, scales, block, grid, out):
    """The lower grid neighbour of each ``w / s`` (as ``_round_rows`` divides), at most
    ``len(grid) - 2``: every code ``_round_rows`` can give is this index or the next."""
    rows, cols = w.shape
    top = len(grid) - 2
    for row in numba.prange(rows):
        for start in range(0, cols, block):
            s = scales[row, start // block]
            for j in range(start, min(start + block, cols)):
                out[row, j] = min(_lower_index(grid, w[row, j] / s), top)


def _round_torch(fmt: NumberFormat, w2: torch.Tensor, scales, stochastic: bool, key: int):
    """The CPU kernels' rule with torch ops, for tensors on other devices (CUDA): the same
    codes bit for bit (the same float32 division and comparisons, the same hash; tested on the
    CPU here, on a GPU by benchmarks/gpu_checks.py)."""
    rows, cols = w2.shape
    block = fmt.block or cols
    per_weight = scales.expand(rows, -1).repeat_interleave(block, dim=1)[:, :cols]
    u = w2 / per_weight
    grid = torch.as_tensor(fmt.grid, device=w2.device)
    n = len(grid)
    lo = (torch.searchsorted(grid, u, right=True) - 1).clamp_(0, n - 2)
    lower, upper = grid[lo], grid[lo + 1]
    if stochastic:
        r = counter_uniforms(key, rows, cols, w2.device)
        codes = lo + (r < (u - lower) / (upper - lower)).long()
    else:
        below, above = u - lower, upper - u
        zero = int(np.flatnonzero(fmt.grid == 0)[0])
        even = (lo - zero).abs() % 2 == 0
        codes = torch.where(below < above, lo, lo + 1)
        codes = torch.where(below == above, torch.where(even, lo, lo + 1), codes)
    codes = torch.where(u <= grid[0], 0, torch.where(u >= grid[-1], n - 1, codes))
    return codes.to(torch.uint8 if fmt.code_dtype == np.uint8 else torch.int32)
