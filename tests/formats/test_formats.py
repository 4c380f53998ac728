"""Number formats (lpe.formats.number_formats): grids and RTN against ml_dtypes, BSR's unbiasedness
per format, INT-b identical to the INT-b kernels, MX block scales and bits per weight."""

from __future__ import annotations

import int_oracle as numbers
import ml_dtypes
import numpy as np
import pytest
import torch

from lpe.formats import names as precision
from lpe.formats import rounding
from lpe.formats.number_formats import FORMATS, MX_BLOCK, get_format
from lpe.formats.rounding import (
    _round,
    dequantize,
    format_scales,
    round_nearest,
    round_stochastic,
    unit_values,
)

# our element formats -> the ml_dtypes type that implements them (round-to-nearest-even casts)
ML_DTYPES = {
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
    "fp6_e2m3": ml_dtypes.float6_e2m3fn,
    "fp6_e3m2": ml_dtypes.float6_e3m2fn,
    "fp4_e2m1": ml_dtypes.float4_e2m1fn,
}
PER_CHANNEL = [name for name, fmt in FORMATS.items() if fmt.block is None]


def ml_dtypes_values(dtype) -> np.ndarray:
    """Every finite value of an ml_dtypes type, from all its bit patterns."""
    bits = ml_dtypes.finfo(dtype).bits
    values = np.arange(2**bits, dtype=np.uint8).view(dtype).astype(np.float32)
    return np.unique(values[np.isfinite(values)])


def test_the_registry_lists_int_float_nf4_and_mx_formats():
    assert len(FORMATS) >= 8
    named = ("int4", "fp8_e4m3", "fp8_e5m2", "fp6_e2m3", "fp6_e3m2", "fp4_e2m1", "nf4", "mxfp4")
    for name in named:
        assert get_format(name).name == name
    assert get_format("int12").grid[-1] == 2047
    with pytest.raises(ValueError, match="unknown number format 'fp5'"):
        get_format("fp5")


@pytest.mark.parametrize("name", sorted(ML_DTYPES))
def test_an_element_grid_is_every_finite_value_of_ml_dtypes(name):
    np.testing.assert_array_equal(FORMATS[name].grid, ml_dtypes_values(ML_DTYPES[name]))
    finfo = ml_dtypes.finfo(ML_DTYPES[name])
    assert FORMATS[name].max_value == float(finfo.max)


@pytest.mark.parametrize("name", sorted(ML_DTYPES))
def test_rtn_equals_the_ml_dtypes_cast(name):
    """On a unit scale (every row's largest weight is the grid's largest value), RTN is the
    round-to-nearest-even cast, ties included: the midpoints of every pair of neighbours."""
    fmt = FORMATS[name]
    grid = fmt.grid.astype(np.float64)
    midpoints = (grid[:-1] + grid[1:]) / 2
    gen = np.random.default_rng(0)
    inside = gen.uniform(-fmt.max_value, fmt.max_value, size=4000)
    x = np.concatenate([midpoints, inside, grid]).astype(np.float32)
    rows = np.full((len(x), 2), fmt.max_value, dtype=np.float32)
    rows[:, 0] = x  # column 1 pins each row's scale to exactly 1
    codes, scales = round_nearest(fmt, torch.from_numpy(rows))
    assert torch.equal(scales, torch.ones_like(scales))
    ours = fmt.grid[codes[:, 0].numpy()]
    reference = x.astype(ML_DTYPES[name]).astype(np.float32)
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 8])
def test_int_formats_give_the_int_kernels_codes_and_scales(bits):
    weight = torch.randn(24, 40, generator=torch.Generator().manual_seed(bits))
    fmt = get_format(f"int{bits}")
    old = numbers.IntFormat(bits)
    old_scales = numbers.compute_scales(weight, old)
    qmax = old.qmax

    codes, scales = round_nearest(fmt, weight)
    assert torch.equal(scales, old_scales.reshape(-1, 1))
    expected = numbers.round_nearest(weight, old_scales, old)
    assert torch.equal(codes.int() - qmax, expected)

    codes, _ = round_stochastic(fmt, weight, key=12345)
    expected = rounding.bsr_codes(weight, old_scales, qmax, key=12345)
    assert torch.equal(codes.int() - qmax, expected.int())
    assert torch.equal(dequantize(fmt, codes, scales), numbers.dequantize(expected, old_scales))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_the_integer_fast_path_draws_what_the_grid_search_draws(bits):
    """INT-b's BSR takes a branch-free floor path; the generic grid search gives the same codes."""
    fmt = get_format(f"int{bits}")
    weight = torch.randn(16, 70, generator=torch.Generator().manual_seed(3))
    fast, scales = round_stochastic(fmt, weight, key=99)
    searched = np.empty(fast.shape, dtype=fmt.code_dtype)
    zero = int(np.flatnonzero(fmt.grid == 0)[0])
    rounding._round_rows(weight.numpy(), scales.numpy(), weight.shape[1], fmt.grid, zero, True,
                        np.uint64(99), searched)  # fmt: skip
    assert torch.equal(fast, torch.from_numpy(searched))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_bsr_is_unbiased_in_every_format(name):
    """The mean of 2,000 draws is within 5 standard errors of each weight, for weights spread over
    the grid (MX: blocks whose scale leaves no weight beyond the grid, so none is clamped), and
    every draw is one of the weight's two neighbours on the grid."""
    fmt = FORMATS[name]
    gen = torch.Generator().manual_seed(1)
    if fmt.block is None:
        weight = torch.randn(4, 64, generator=gen)
    else:  # a block maximum of 2**emax gives scale 1 and unit values within [-2**emax, 2**emax]
        weight = torch.rand(4, 2 * MX_BLOCK, generator=gen) * 2 ** (fmt.emax + 1) - 2**fmt.emax
        weight[:, ::MX_BLOCK] = 2.0**fmt.emax
    rtn_codes, scales = round_nearest(fmt, weight)
    draws, codes = [], []
    for key in range(2000):
        drawn, drawn_scales = round_stochastic(fmt, weight, key=key)
        assert torch.equal(drawn_scales, scales)
        codes.append(drawn.long())
        draws.append(dequantize(fmt, drawn, scales))
    draws = torch.stack(draws)
    assert ((torch.stack(codes) - rtn_codes.long()).abs() <= 1).all()
    # the standard error of the mean from each weight's own Bernoulli probability (in float64)
    u = unit_values(fmt, weight, scales).double().numpy().reshape(-1)
    grid = fmt.grid.astype(np.float64)
    lo = np.clip(np.searchsorted(grid, u, side="right") - 1, 0, len(grid) - 2)
    step = grid[lo + 1] - grid[lo]
    prob = np.clip((u - grid[lo]) / step, 0, 1)
    per_weight_scale = (weight.double().reshape(-1) / torch.from_numpy(u)).nan_to_num(0).abs()
    standard_error = per_weight_scale * torch.from_numpy(step * np.sqrt(prob * (1 - prob) / 2000))
    error = (draws.double().mean(0) - weight.double()).reshape(-1).abs()
    exact = standard_error == 0  # on the grid: drawn (up to the scale's rounding) every time
    assert (error[exact] <= 1e-6 * weight.double().reshape(-1)[exact].abs()).all()
    z = error[~exact] / standard_error[~exact]
    assert z.max() < 5, f"{name}: largest |z| {z.max():.2f}"


@pytest.mark.parametrize("name", ["mxfp4", "mxfp6_e2m3", "mxfp8_e4m3"])
def test_mx_scales_are_e8m0_powers_of_two_that_put_the_block_maximum_at_emax(name):
    fmt = FORMATS[name]
    weight = torch.randn(6, 3 * MX_BLOCK + 5, generator=torch.Generator().manual_seed(2)) * 3
    scales = format_scales(fmt, weight)
    assert scales.shape == (6, 4)  # the last, short block has a scale of its own
    as_e8m0 = scales.numpy().astype(ml_dtypes.float8_e8m0fnu).astype(np.float32)
    np.testing.assert_array_equal(as_e8m0, scales.numpy())  # exactly representable in E8M0
    padded = torch.nn.functional.pad(weight, (0, 4 * MX_BLOCK - weight.shape[1]))
    block_max = padded.reshape(6, 4, MX_BLOCK).abs().amax(2)
    ratio = block_max / scales
    assert ((ratio >= 2**fmt.emax) & (ratio < 2 ** (fmt.emax + 1))).all()


def test_bits_per_weight_count_codes_and_scales():
    assert get_format("int4").bits_per_weight(384) == 4 + 32 / 384
    assert get_format("mxfp4").bits_per_weight(64) == 4.25
    assert get_format("mxfp4").bits_per_weight(40) == 4 + 16 / 40  # two blocks' scales
    assert get_format("nf4").bits_per_weight(32) == 5.0


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_torch_path_for_other_devices_gives_the_cpu_kernels_codes(name):
    """Tensors on a GPU take a torch version of the kernels; run here on CPU tensors, it must
    give the numba kernels' codes bit for bit, RTN (ties included) and BSR."""
    fmt = FORMATS[name]
    weight = torch.randn(12, 100, generator=torch.Generator().manual_seed(4)) * 2
    weight[0, :50] = torch.linspace(-1, 1, 50)  # a row with exact ties for the coarse grids
    for stochastic in (False, True):
        expected, scales = _round(fmt, weight, stochastic, key=2024)
        ours = rounding._round_torch(fmt, weight, scales, stochastic, key=2024)
        assert torch.equal(ours.long(), expected.long()), (name, stochastic)


def test_precision_names_parse_label_and_order_in_one_place():
    assert precision.parse("fp8_e4m3") == ("fp", 8, "E4M3")
    assert precision.parse("mxfp4") == ("mxfp", 4, "")
    labels = {"fp32": "FP32", "int4": "INT-4", "fp8_e5m2": "FP8 E5M2", "nf4": "NF4",
              "mxfp4": "MXFP4", "mxfp6_e2m3": "MXFP6 E2M3", "int12": "INT-12"}  # fmt: skip
    for name, label in labels.items():
        assert precision.label(name) == label
    for name in FORMATS:  # the objects use the same function
        assert FORMATS[name].label == precision.label(name)
        assert FORMATS[name].code_bits == precision.code_bits(name)
    shuffled = ["nf4", "int4", "fp32", "fp6_e2m3", "int6", "mxfp4", "int8", "fp4_e2m1"]
    ordered = ["fp32", "int8", "int6", "fp6_e2m3", "int4", "fp4_e2m1", "mxfp4", "nf4"]
    assert sorted(shuffled, key=precision.sort_key) == ordered
    for bad in ("fp5x", "INT4", "int", "fp8_e4"):
        with pytest.raises(ValueError, match="not a number format name"):
            precision.parse(bad)


@pytest.mark.parametrize("name", ["int4", "int16", "fp8_e4m3", "mxfp4", "nf4", "int17", "int1",
                                  "fp5", "fp8_e3m4", "nf8", "mxint8"])  # fmt: skip
def test_the_light_check_of_a_name_agrees_with_building_it(name):
    """The config is checked with lpe.formats.names (no torch); the formats build exactly those."""
    if precision.known(name):
        assert get_format(name).name == name
    else:
        with pytest.raises(ValueError, match=f"unknown number format '{name}'"):
            get_format(name)


def qlora_nf4_values() -> np.ndarray:
    """NF4 built as QLoRA builds it (bitsandbytes' ``create_normal_map``, offset 0.9677083): 8
    positive and 7 negative quantiles of N(0, 1) between the offset and 1/2, an exact zero, then
    scaled so that the largest is 1. Computed here, independently of the table in
    lpe.formats.number_formats."""
    from scipy.stats import norm

    offset = 0.9677083
    positive = norm.ppf(np.linspace(offset, 0.5, 9, dtype=np.float32)[:-1])
    negative = -norm.ppf(np.linspace(offset, 0.5, 8, dtype=np.float32)[:-1])
    values = np.sort(np.concatenate([positive, [0.0], negative])).astype(np.float32)
    return values / values.max()


def test_the_nf4_codebook_is_qloras_normal_quantiles():
    from lpe.formats.number_formats import NF4_VALUES

    ours = np.asarray(NF4_VALUES, dtype=np.float32)
    expected = qlora_nf4_values()
    assert ours.shape == (16,) and ours[7] == 0.0
    # float32 agreement: a value wrong in its third (or sixth) decimal fails
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
