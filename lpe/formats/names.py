"""Precision names, the one token that names a number format everywhere: parse, label, order.

A precision is ``fp32`` or a number format's name (:mod:`lpe.formats.number_formats`): ``int4``,
``fp8_e4m3``, ``fp6_e2m3``, ``nf4``, ``mxfp4``, ``mxfp6_e2m3``. The name is what the config lists,
what the paths hold (``preds/vit_mini_t/bsr-fp4_e2m1-seed0.npz``), what the predictions files and
the ``precision`` column of the score CSVs store, and what the tables print through :func:`label`
(``INT-4``, ``FP8 E4M3``, ``MXFP4``). A name is letters, the element's code width, then optionally
``_e<E>m<M>`` (exponent and mantissa bits), so the label and the width are read off the name here,
in one place, without importing the formats themselves (torch), which the report stages do not.

``CATALOGUE`` lists the registered formats, one line each, so that the config can be checked
before any job without importing torch; :mod:`lpe.formats.number_formats` builds each entry into its
object.
"""

from __future__ import annotations

import re

FP32 = "fp32"
NAME = re.compile(r"(?P<family>[a-z]+?)(?P<bits>\d+)(?:_e(?P<e>\d+)m(?P<m>\d+))?")
INT_BITS = range(2, 17)  # int2..int16 are known; int2..int8 are registered (listed)
MIN_BITS, MAX_BITS = INT_BITS[0], INT_BITS[-1]

# name -> (kind, argument): lpe.formats.number_formats.BUILDERS has one builder per kind. A float's
# exponent and mantissa widths are in its name; the argument says which bit patterns are not
# numbers.
CATALOGUE: dict[str, tuple[str, str]] = {
    **{int_format: ("int", "") for int_format in (f"int{b}" for b in range(2, 9))},
    "fp8_e4m3": ("float", "nan_top_code"),  # OFP8 E4M3 ("fn"): only S.1111.111 is NaN
    "fp8_e5m2": ("float", "ieee_specials"),  # OFP8 E5M2: IEEE infinities and NaNs
    "fp6_e2m3": ("float", ""),  # the MX v1.0 element formats: every pattern is a number
    "fp6_e3m2": ("float", ""),
    "fp4_e2m1": ("float", ""),
    "nf4": ("codebook", ""),  # QLoRA's NormalFloat (lpe.formats.number_formats.CODEBOOKS)
    "mxfp8_e4m3": ("mx", "fp8_e4m3"),  # OCP MX v1.0: the element format, 32 weights per scale
    "mxfp6_e2m3": ("mx", "fp6_e2m3"),
    "mxfp4": ("mx", "fp4_e2m1"),
}


def known(precision: str) -> bool:
    """Whether ``precision`` names a format lpe.formats.number_formats can build (or is fp32)."""
    if precision == FP32 or precision in CATALOGUE:
        return True
    match = NAME.fullmatch(precision)
    is_int = match and match["family"] == "int" and match["e"] is None
    return bool(is_int and int(match["bits"]) in INT_BITS)


def unknown_problem(precision: str) -> str | None:
    """Why ``precision`` is not a format name, naming the known ones; None when it is one."""
    if known(precision):
        return None
    return f"unknown number format {precision!r}; known: {', '.join(CATALOGUE)} (and int2..int16)"


def low_precision_problem(precision: str) -> str | None:
    """Why ``precision`` is no low precision format (unknown, or fp32); None when it is one."""
    if precision == FP32:
        return "fp32 is the reference, not a low precision format"
    return unknown_problem(precision)


def parse(precision: str) -> tuple[str, int, str]:
    """``(family, code bits, element)`` of a format name: ``fp8_e4m3 -> ("fp", 8, "E4M3")``."""
    match = NAME.fullmatch(precision)
    if precision == FP32 or match is None:
        raise ValueError(
            f"not a number format name: {precision!r} (letters, the code width, optionally "
            "_e<E>m<M>: int4, fp8_e4m3, nf4, mxfp4)"
        )
    element = f"E{match['e']}M{match['m']}" if match["e"] is not None else ""
    return match["family"], int(match["bits"]), element


def int_name(bits: int) -> str:
    """The name of symmetric INT-``bits``, for the config keys that give a bit width."""
    return f"int{int(bits)}"


def int_bits(precision: str) -> int:
    """The width b of INT-b's name (``int4 -> 4``), for what varies INT-b's width alone (Figure 1's
    grid, Table 6's LPE-BSR precision); another format stops with a one-line reason."""
    if not known(precision) or parse(precision)[0] != "int":
        raise ValueError(f"{precision!r} is not an INT-b format (int{MIN_BITS}..int{MAX_BITS})")
    return parse(precision)[1]


def label(precision: str) -> str:
    """What tables and figures print: ``fp32 -> FP32``, ``int4 -> INT-4``, ``fp8_e4m3 -> FP8
    E4M3``, ``mxfp4 -> MXFP4``, ``nf4 -> NF4``."""
    if precision == FP32:
        return "FP32"
    family, bits, element = parse(precision)
    head = f"INT-{bits}" if family == "int" else f"{family.upper()}{bits}"
    return f"{head} {element}".strip()


def code_bits(precision: str) -> int:
    """Bits of one code (32 for FP32); the MX formats' shared scales are not counted here."""
    return 32 if precision == FP32 else parse(precision)[1]


def sort_key(precision: str) -> tuple[int, str]:
    """FP32 first, then the widest codes first, then INT-b before the other families, by name."""
    if precision == FP32:
        return (-99, "")
    family, bits, _ = parse(precision)
    return (-bits, "" if family == "int" else precision)
