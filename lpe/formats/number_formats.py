"""Number formats as objects: a name, a grid of representable values, its scales and codes.

A format is a description: a name, a finite, sorted grid of representable values at unit scale
(INT-b's integers, the OCP FP8/FP6/FP4 element values, the NF4 codebook) and the rule of its
scales; weights map to codes and scales as ``w ~ scale * grid[code]``:

- **per output channel** (the suite's INT-b convention): one FP32 scale per row of the weight
  (dim 0), ``max|w| / max(grid)``, so a row's largest weight lands on the grid's largest value;
- **MX block scaling** (OCP MX v1.0): blocks of 32 consecutive weights of a row share one E8M0
  scale, the power of two ``2 ** (floor(log2(max|w|)) - emax)``, with ``emax`` the element
  format's largest exponent; elements beyond the grid's largest value are clamped (the spec's
  rule).

Everything that touches a tensor (the scales, rounding onto the grid with RTN or BSR and their
kernels, dequantization, the scales as files store them) is :mod:`lpe.formats.rounding`;
storing the codes at their width is :mod:`lpe.formats.packing`. INT-b is ``int_format(bits)``, the
suite's one INT-b type (tests/int_oracle.py writes it out plainly, as the tests' oracle).

Why a grid of our own rather than ``ml_dtypes`` casts: ml_dtypes has no stochastic rounding, no
NF4 and no block scales, and gfloat's generic kernels are pure Python over arrays (seconds per
member here). Both are used in the tests, as the independent check of every grid and of RTN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from lpe.formats import names as precision

MX_BLOCK = 32  # weights per E8M0 scale in the MX formats (OCP MX v1.0)
E8M0_BITS = 8

# NF4 (QLoRA, Dettmers et al. 2023): quantiles of N(0, 1) rescaled to [-1, 1] with an exact zero,
# as bitsandbytes ships them.
NF4_VALUES = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)


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

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if len(self.grid) <= 256 else np.dtype(np.uint16)


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
    """The format ``name`` of lpe.formats.names.CATALOGUE (or INT-b for b in 2..16)."""
    if problem := precision.unknown_problem(name):
        raise ValueError(problem)
    kind, argument = precision.CATALOGUE.get(name, ("int", ""))
    return BUILDERS[kind](name, argument)


FORMATS: dict[str, NumberFormat] = {name: build(name) for name in precision.CATALOGUE}


def get_format(name: str, per_channel: bool = True) -> NumberFormat:
    """The format called ``name`` (registered, or INT-b for any b in 2..16 as ``int{b}``), with
    one scale per output channel or, ``per_channel=False``, one per tensor."""
    fmt = FORMATS[name] if name in FORMATS else build(name)
    return fmt if per_channel else dataclasses.replace(fmt, per_channel=False)
