import pytest
import torch
from int_oracle import (
    IntFormat,
    compute_scales,
    dequantize,
    round_nearest,
    round_stochastic,
)

from lpe.formats.names import MAX_BITS, MIN_BITS


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bits", [0, 1, 17, 3.0, "4"])
def test_format_rejects_bits_outside_range(bits):
    with pytest.raises(ValueError, match=f"{MIN_BITS}..{MAX_BITS}"):
        IntFormat(bits)


def test_qmax_is_symmetric_range():
    assert IntFormat(2).qmax == 1
    assert IntFormat(4).qmax == 7
    assert IntFormat(16).qmax == 32767


def test_scales_are_per_output_channel():
    w = torch.tensor([[1.0, -3.0], [0.5, 0.25], [0.0, 0.0]])
    s = compute_scales(w, IntFormat(4))
    assert s.shape == (3, 1)
    torch.testing.assert_close(s.squeeze(1), torch.tensor([3.0 / 7, 0.5 / 7, 1.0]))
    # the all-zero channel gets scale 1 so its codes are exactly 0
    assert torch.equal(round_nearest(w, s, IntFormat(4))[2], torch.zeros(2, dtype=torch.int32))


def test_scales_per_tensor_option():
    w = torch.randn(5, 3, 2, 2, generator=gen())
    s = compute_scales(w, IntFormat(4, per_channel=False))
    assert s.shape == (1, 1, 1, 1)
    assert torch.isclose(s.flatten()[0], w.abs().max() / 7)


def test_conv_kernel_scales_broadcast_over_channel():
    w = torch.randn(4, 3, 2, 2, generator=gen())
    s = compute_scales(w, IntFormat(6))
    assert s.shape == (4, 1, 1, 1)
    for c in range(4):
        assert torch.isclose(s[c, 0, 0, 0], w[c].abs().max() / 31)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 16])
def test_rtn_picks_the_nearest_code(bits):
    fmt = IntFormat(bits)
    w = torch.randn(16, 33, generator=gen(bits))
    s = compute_scales(w, fmt)
    q = round_nearest(w, s, fmt)
    assert q.abs().max() <= fmt.qmax
    # no other code on the grid is closer than the chosen one
    distance = (w - dequantize(q, s)).abs()
    for step in (-1, 1):
        other = (q + step).clamp(-fmt.qmax, fmt.qmax)
        assert torch.all(distance <= (w - dequantize(other, s)).abs() + 1e-6)


@pytest.mark.parametrize("bits", [2, 4, 5, 8])
def test_bsr_lands_on_the_two_neighbouring_grid_points(bits):
    fmt = IntFormat(bits)
    w = torch.randn(8, 50, generator=gen(1))
    s = compute_scales(w, fmt)
    u = w / s
    for seed in range(5):
        q = round_stochastic(w, s, fmt, gen(seed)).float()
        assert torch.all((q == torch.floor(u)) | (q == torch.ceil(u)))
        assert q.abs().max() <= fmt.qmax


def test_bsr_is_unbiased():
    fmt = IntFormat(4)
    w = torch.randn(4, 64, generator=gen(2))
    s = compute_scales(w, fmt)
    draws = 4000
    g = gen(3)
    # accumulate codes as integers: a float32 running sum would drift by more than the test's sd
    codes = sum(round_stochastic(w, s, fmt, g).long() for _ in range(draws))
    mean = s.double() * codes.double() / draws
    # each coordinate is a scaled Bernoulli: sd of the mean = s * sqrt(f (1 - f) / draws)
    frac = w / s - torch.floor(w / s)
    sd = s * torch.sqrt(frac * (1 - frac) / draws)
    # 5.5 sd: a false alarm every ~10^7 coordinates; 1e-6 s absorbs float32 rounding of w / s
    assert torch.all((mean - w.double()).abs() <= 5.5 * sd + 1e-6 * s)
    # and the empirical probability of rounding up matches the fractional part
    ups = (
        sum(
            (round_stochastic(w, s, fmt, g).float() > torch.floor(w / s)).float()
            for _ in range(2000)
        )
        / 2000
    )
    assert (ups - frac).abs().max() < 0.05


def test_bsr_of_grid_points_is_exact():
    fmt = IntFormat(4)
    s = torch.full((3, 1), 0.1)
    codes = torch.tensor([[-7, 0, 7], [1, 2, 3], [-1, -2, -3]], dtype=torch.int32)
    w = dequantize(codes, s)
    assert torch.equal(round_stochastic(w, s, fmt, gen()), codes)


def test_bsr_uses_only_the_given_generator():
    fmt = IntFormat(4)
    w = torch.randn(10, 10, generator=gen(4))
    s = compute_scales(w, fmt)
    torch.manual_seed(123)
    a = round_stochastic(w, s, fmt, gen(7))
    torch.manual_seed(456)  # the global RNG must not matter
    b = round_stochastic(w, s, fmt, gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, round_stochastic(w, s, fmt, gen(8)))
