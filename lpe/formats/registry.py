"""Number formats as objects: a name, a grid of representable values, bits per weight, RTN and BSR.

A format maps a weight tensor to codes and scales: ``w ~ scale * grid[code]``. Every format here is
a finite, sorted grid of representable values at unit scale (INT-b's integers, the OCP FP8/FP6/FP4
element values, the NF4 codebook), plus a rule for its scales:

- **per output channel** (the suite's INT-b convention): one FP32 scale per row of the weight
  (dim 0), ``max|w| / max(grid)``, so a row's largest weight lands on the grid's largest value;
- **MX block scaling** (OCP MX v1.0): blocks of 32 consecutive weights of a row share one E8M0
  scale, the power of two ``2 ** (floor(log2(max|w|)) - emax)``, with ``emax`` the element
  format's largest exponent; elements beyond the grid's largest value are clamped (the spec's
  rule).

RTN is the nearest grid value, ties to the even magnitude index, which is round-half-to-even for
INT-b and for the float formats (neighbouring floats alternate their last mantissa bit). BSR draws
one of the two neighbours ``lo <= u <= hi``, ``hi`` with probability ``(u - lo) / (hi - lo)``, so
``E[scale * value] = w`` inside the grid's range (a weight beyond it is clamped to the end). The
uniform comes from the counter-based stream of :mod:`lpe.formats.kernels`: weight ``i`` of a tensor
with key ``k`` draws ``mix64(k + (i + 1) * GOLDEN)``, so a draw depends on (key, index) only. On an
integer grid the rule is exactly INT-b's ``floor(u) + (r < frac(u))``, and so are the codes
(tested).

Why a grid of our own rather than ``ml_dtypes`` casts: ml_dtypes has no stochastic rounding, no
NF4 and no block scales, and gfloat's generic kernels are pure Python over arrays (seconds per
member here). Both are used in the tests, as the independent check of every grid and of RTN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numba
import numpy as np
import torch

from lpe.formats import names as precision
from lpe.formats.kernels import (
    GOLDEN,
    INV24,
    _mix64,
    bsr_codes,
    counter_uniforms,
    keeping_threads,
)

MX_BLOCK = 32  # weights per E8M0 scale in the MX formats (OCP MX v1.0)
E8M0_BITS = 8

# NF4 (QLoRA, Dettmers et al. 2023): quantiles of N(0, 1) rescaled to [-1, 1] with an exact zero,
# as bitsandbytes ships them.
NF4_VALUES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
)  # fmt: skip


def float_grid(
    exponent_bits: int,
    mantissa_bits: int,
    *,
    ieee_specials: bool = False,
    nan_top_code: bool = False,
) -> np.ndarray:
    """The finite values of a sign-exponent-mantissa format, sorted, zero once.

    ``ieee_specials``: the top exponent is infinity and NaN (E5M2). ``nan_top_code``: only the
    all-ones exponent-and-mantissa pattern is NaN (OFP8 E4M3 "fn"). Neither: every pattern is a
    number (the MX FP6/FP4 element formats).
    """
    bias = 2 ** (exponent_bits - 1) - 1
    top = 2**exponent_bits - 1
    magnitudes = []
    for e in range(top + 1):
        if ieee_specials and e == top:
            continue
        for m in range(2**mantissa_bits):
            if nan_top_code and e == top and m == 2**mantissa_bits - 1:
                continue
            if e == 0:  # subnormal
                value = m * 2.0 ** (1 - bias - mantissa_bits)
            else:
                value = (1 + m / 2**mantissa_bits) * 2.0 ** (e - bias)
            magnitudes.append(value)
    positive = np.unique(np.array(magnitudes, dtype=np.float64))
    return np.concatenate([-positive[:0:-1], positive]).astype(np.float32)


@dataclass(frozen=True)
class NumberFormat:
    """A sorted grid of representable values (zero among them) and how weights are scaled onto it.

    ``name`` is the token that flows through config, paths, files and CSVs (``int4``,
    ``fp8_e4m3``, ``mxfp4``; :mod:`lpe.formats.names` reads its label and code width off it).
    ``block`` is None for one FP32 scale per output channel, or the number of weights that share
    one E8M0 scale; then ``emax`` is the element format's largest exponent.
    """

    name: str
    grid: np.ndarray = field(repr=False)
    block: int | None = None
    emax: int | None = None
    per_channel: bool = True  # False: one FP32 scale for the whole tensor (not for MX formats)

    def __post_init__(self) -> None:
        precision.parse(self.name)  # a name the reports can label
        grid = np.asarray(self.grid, dtype=np.float32)
        if grid.ndim != 1 or len(grid) < 2 or not np.all(np.diff(grid) > 0):
            raise ValueError(f"{self.name}: the grid must be strictly increasing, 2+ values")
        if not np.any(grid == 0):
            raise ValueError(f"{self.name}: the grid must hold zero")
        if len(grid) > 2**self.code_bits:
            raise ValueError(f"{self.name}: {len(grid)} values do not fit {self.code_bits} bits")
        if (self.block is None) != (self.emax is None):
            raise ValueError(f"{self.name}: a block-scaled format needs emax, and only it")
        if self.block is not None and not self.per_channel:
            raise ValueError(f"{self.name}: a block-scaled format has no per-tensor scale")
        object.__setattr__(self, "grid", grid)

    @property
    def label(self) -> str:
        """What tables print: ``INT-4``, ``FP8 E4M3``, ``MXFP4``."""
        return precision.label(self.name)

    @property
    def code_bits(self) -> int:
        """Storage width of one code, read off the name (``fp6_e2m3``: 6)."""
        return precision.code_bits(self.name)

    @property
    def integer_grid(self) -> bool:
        """Whether the grid is the consecutive integers ``-qmax ... qmax`` (INT-b), which has a
        fast path."""
        grid = self.grid
        return bool(np.all(np.diff(grid) == 1) and grid[-1] == -grid[0] == np.round(grid[-1]))

    @property
    def max_value(self) -> float:
        return float(self.grid[-1])

    @property
    def scale_bits(self) -> int:
        """Bits of one stored scale: FP32, or an E8M0 exponent for the MX formats."""
        return 32 if self.block is None else E8M0_BITS

    def scale_bits_per_weight(self, row_length: int) -> float:
        """Bits of scale per weight in a row of ``row_length`` weights (per-channel scales)."""
        if self.block is None:
            return 32 / row_length
        return E8M0_BITS * -(-row_length // self.block) / row_length

    def bits_per_weight(self, row_length: int) -> float:
        """Code plus scale bits per quantized weight (a row of ``row_length`` weights)."""
        return self.code_bits + self.scale_bits_per_weight(row_length)

    def scales(self, weight: torch.Tensor) -> torch.Tensor:
        """FP32 scales, one per row (``(rows, 1)``), per tensor (``(1, 1)``) or per block
        (``(rows, blocks)``)."""
        w2 = _rows(weight)
        if self.block is None:
            absmax = w2.abs().amax(dim=1, keepdim=True) if self.per_channel else w2.abs().amax()
            absmax = absmax.reshape(-1, 1)
            scales = absmax / self.max_value
            return torch.where(scales > 0, scales, torch.ones_like(scales))
        blocks = _blocked(w2, self.block).abs().amax(dim=2)  # (rows, blocks)
        exponent = torch.floor(torch.log2(blocks)) - self.emax
        exponent = torch.where(blocks > 0, exponent, torch.zeros_like(exponent))
        # E8M0 holds 2**-127 ... 2**127
        return torch.exp2(exponent.clamp(-127, 127))

    def unit_values(self, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """``w / scale`` per weight, as a (rows, row_length) float32 tensor."""
        w2 = _rows(weight)
        if self.block is None:
            return w2 / scales
        per_weight = scales.repeat_interleave(self.block, dim=1)[:, : w2.shape[1]]
        return w2 / per_weight

    def round_nearest(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RTN: (codes, scales); ``codes`` index the grid (uint8/uint16, weight's shape)."""
        return self._round(weight, stochastic=False, key=0)

    def round_stochastic(self, weight: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """BSR: (codes, scales) drawn from the counter-based stream with ``key`` (< 2**63)."""
        return self._round(weight, stochastic=True, key=key)

    def _round(self, weight, stochastic: bool, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        scales = self.scales(weight)
        if weight.device.type != "cpu":
            codes = _round_torch(self, _rows(weight), scales, stochastic, key)
            return codes.reshape(weight.shape), scales
        if stochastic and self.integer_grid and self.block is None:
            # INT-b: lpe.formats.kernels' branch-free floor kernel (a grid search costs ~4x more).
            # Its signed codes q are this grid's indices q + qmax (tested): reinterpreted as
            # unsigned and offset in place, since two's complement wraps q + qmax into 0 ... 2 qmax.
            qmax = int(self.grid[-1])
            codes = bsr_codes(weight, scales, qmax, key).numpy()
            indices = codes.view(self.code_dtype)  # int8 -> uint8, int16 -> uint16
            indices += indices.dtype.type(qmax)
            return torch.from_numpy(indices), scales
        w2 = _rows(weight).contiguous().numpy()
        out = np.empty(w2.shape, dtype=self.code_dtype)
        zero = int(np.flatnonzero(self.grid == 0)[0])
        block = self.block or w2.shape[1]
        scales_np = scales.expand(w2.shape[0], -1).contiguous().numpy()  # per tensor: each row
        keeping_threads(_round_rows, w2, scales_np, block, self.grid, zero, stochastic,
                        np.uint64(key), out)  # fmt: skip
        return torch.from_numpy(out).reshape(weight.shape), scales

    def lower_codes(self, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Per weight, the index of the lower of the two grid neighbours of ``w / s`` (clamped
        to ``0 ... len(grid) - 2``): every RTN or BSR code of the weight is this index or the
        next one (a weight beyond the grid's ends rounds to an end, still one of the two). The
        base of a shared-base ensemble (``lpe.members.shared_base``), from the weights alone."""
        if weight.device.type != "cpu":
            u = self.unit_values(weight, scales).contiguous()
            grid = torch.as_tensor(self.grid, device=u.device)
            lower = (torch.searchsorted(grid, u, right=True) - 1).clamp_(0, len(grid) - 2)
            return torch.from_numpy(
                lower.reshape(weight.shape).cpu().numpy().astype(self.code_dtype)
            )
        w2 = _rows(weight).contiguous().numpy()
        out = np.empty(w2.shape, dtype=self.code_dtype)
        scales_np = scales.expand(w2.shape[0], -1).contiguous().numpy()
        keeping_threads(_lower_rows, w2, scales_np, self.block or w2.shape[1], self.grid, out)
        return torch.from_numpy(out).reshape(weight.shape)

    def dequantize(self, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """The FP32 weight a member runs with: ``scale * grid[code]``."""
        grid = torch.as_tensor(self.grid, device=codes.device)
        values = grid[codes.reshape(codes.shape[0], -1).long()]
        if self.block is None:
            return (values * scales).reshape(codes.shape)
        per_weight = scales.repeat_interleave(self.block, dim=1)[:, : values.shape[1]]
        return (values * per_weight).reshape(codes.shape)

    def stored_scales(self, scales: torch.Tensor) -> torch.Tensor:
        """Scales as a member file stores them: FP32, or MX's E8M0 exponents (uint8, e + 127)."""
        if self.block is None:
            return scales.float()
        return (torch.log2(scales).round() + 127).to(torch.uint8)

    def loaded_scales(self, stored: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`stored_scales`, as (rows, 1), (1, 1) or (rows, blocks)."""
        stored = stored.reshape(stored.shape[0], -1)  # older files: (out, 1, 1, ...)
        if self.block is None:
            return stored
        return torch.exp2(stored.float() - 127)

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if len(self.grid) <= 256 else np.dtype(np.uint16)


def _rows(weight: torch.Tensor) -> torch.Tensor:
    w = weight.detach().float()
    return w.reshape(w.shape[0] if w.dim() >= 1 else 1, -1)


def _blocked(w2: torch.Tensor, block: int) -> torch.Tensor:
    """(rows, cols) -> (rows, blocks, block), the last block padded with zeros."""
    rows, cols = w2.shape
    pad = -cols % block
    return torch.nn.functional.pad(w2, (0, pad)).reshape(rows, -1, block)


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
    ``key``, as lpe.formats.kernels does for INT-b, and takes the upper neighbour when ``r < p``.
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


def int_format(bits: int) -> NumberFormat:
    """Symmetric INT-``bits``: codes ``-qmax ... qmax``, ``qmax = 2**(bits - 1) - 1``."""
    qmax = 2 ** (bits - 1) - 1
    return NumberFormat(precision.int_name(bits), np.arange(-qmax, qmax + 1, dtype=np.float32))


def float_format(name: str, specials: str) -> NumberFormat:
    """A sign-exponent-mantissa element format (``fp8_e4m3``), one FP32 scale per channel."""
    exponent, mantissa = (int(x) for x in precision.parse(name)[2][1:].split("M"))
    flags = {specials: True} if specials else {}
    return NumberFormat(name, float_grid(exponent, mantissa, **flags))


CODEBOOKS = {"nf4": NF4_VALUES}


def codebook_format(name: str, _: str = "") -> NumberFormat:
    return NumberFormat(name, np.array(CODEBOOKS[name], dtype=np.float32))


def mx_format(name: str, element: str) -> NumberFormat:
    """An MX format: ``element``'s grid, one E8M0 scale per ``MX_BLOCK`` weights; ``emax`` is the
    element format's largest exponent."""
    grid = build(element).grid
    emax = int(np.floor(np.log2(grid[-1])))
    return NumberFormat(name, grid, block=MX_BLOCK, emax=emax)


BUILDERS = {
    "int": lambda name, _: int_format(precision.code_bits(name)),
    "float": float_format,
    "codebook": codebook_format,
    "mx": mx_format,
}


def build(name: str) -> NumberFormat:
    """The format ``name`` of lpe.formats.names.REGISTRY (or INT-b for b in 2..16)."""
    if problem := precision.unknown_problem(name):
        raise ValueError(problem)
    kind, argument = precision.REGISTRY.get(name, ("int", ""))
    return BUILDERS[kind](name, argument)


FORMATS: dict[str, NumberFormat] = {name: build(name) for name in precision.REGISTRY}


def get_format(name: str, per_channel: bool = True) -> NumberFormat:
    """The format called ``name`` (registered, or INT-b for any b in 2..16 as ``int{b}``), with
    one scale per output channel or, ``per_channel=False``, one per tensor."""
    fmt = FORMATS[name] if name in FORMATS else build(name)
    return fmt if per_channel else dataclasses.replace(fmt, per_channel=False)
