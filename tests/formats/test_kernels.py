"""The counter-based BSR kernel and the packing kernels against independent references."""

import numba
import numpy as np
import pytest
import torch
from int_oracle import IntFormat, compute_scales, round_stochastic

from lpe.formats import packing, rounding


def weights(shape=(48, 70), seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def reference_pack(codes: np.ndarray, bits: int, qmax: int) -> np.ndarray:
    """Plain numpy packing: a (n, bits) bit matrix, LSB first, cut into little-endian bytes."""
    offset = (codes.astype(np.int64) + qmax).astype(np.uint32)
    planes = ((offset[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1), bitorder="little")


@pytest.mark.parametrize("bits", range(2, 17))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_pack_kernel_matches_the_numpy_reference(bits, n):
    qmax = 2 ** (bits - 1) - 1
    rng = np.random.default_rng(bits * 100 + n)
    codes = rng.integers(-qmax, qmax + 1, n).astype(packing.code_dtype(bits))
    packed = packing.pack(codes, bits, qmax)
    np.testing.assert_array_equal(packed, reference_pack(codes, bits, qmax))
    np.testing.assert_array_equal(packing.unpack(packed, bits, qmax, n), codes)


@pytest.mark.parametrize("shape", [(48, 70), (8, 3, 2, 2), (5,), (1, 1000)])
@pytest.mark.parametrize("per_channel", [True, False])
def test_cpu_kernel_and_torch_path_are_bit_identical(shape, per_channel):
    """The torch-ops path serves CUDA; on the CPU it must give the kernel's codes exactly."""
    fmt = IntFormat(4, per_channel=per_channel)
    w = weights(shape)
    s = compute_scales(w, fmt)
    codes = rounding.bsr_codes(w, s, fmt.qmax, key=2024)
    rows = shape[0]
    s_rows = torch.broadcast_to(s, w.shape).reshape(rows, -1)[:, 0]
    via_torch = rounding._bsr_codes_torch(w.reshape(rows, -1), s_rows, fmt.qmax, 2024, torch.int8)
    assert torch.equal(codes, via_torch.reshape(shape))


def test_codes_do_not_depend_on_the_thread_count():
    w = weights((256, 300))
    s = compute_scales(w, IntFormat(5))
    default = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = rounding.bsr_codes(w, s, 15, key=7)
        numba.set_num_threads(default)
        many = rounding.bsr_codes(w, s, 15, key=7)
    finally:
        numba.set_num_threads(default)
    assert torch.equal(one, many)
    assert not torch.equal(one, rounding.bsr_codes(w, s, 15, key=8))


def test_codes_land_on_the_two_neighbours_and_are_unbiased():
    fmt = IntFormat(4)
    w = weights((16, 64), seed=1)
    s = compute_scales(w, fmt)
    u = w / s
    draws = 3000
    total = torch.zeros_like(w, dtype=torch.float64)
    for key in range(draws):
        q = rounding.bsr_codes(w, s, fmt.qmax, key).float()
        assert torch.all((q == torch.floor(u)) | (q == torch.ceil(u)))
        total += q.double()
    frac = u - torch.floor(u)
    mean = s.double() * total / draws
    sd = s * torch.sqrt(frac * (1 - frac) / draws)
    assert torch.all((mean - w.double()).abs() <= 5.5 * sd + 1e-6 * s)


def test_kernel_agrees_in_distribution_with_the_reference_expression():
    """Per weight, P(round up) from the kernel and from torch.rand both match frac(w/s)."""
    fmt = IntFormat(3)
    w = weights((4, 50), seed=2)
    s = compute_scales(w, fmt)
    low = torch.floor(w / s)
    draws = 4000
    g = torch.Generator().manual_seed(0)
    kernel_up = sum((rounding.bsr_codes(w, s, fmt.qmax, k).float() > low).double()
                    for k in range(draws)) / draws  # fmt: skip
    reference_up = sum((round_stochastic(w, s, fmt, g).float() > low).double()
                       for _ in range(draws)) / draws  # fmt: skip
    frac = (w / s - low).double()
    # two independent binomial proportions: sd of their difference <= sqrt(2 * 0.25 / draws)
    assert (kernel_up - reference_up).abs().max() < 5 * (0.5 / draws) ** 0.5
    assert (kernel_up - frac).abs().max() < 5 * (0.25 / draws) ** 0.5


def test_draws_are_uncorrelated_across_weights_and_members():
    """Centred round-up indicators: neighbouring weights and consecutive keys are uncorrelated."""
    w = torch.full((1, 20000), 0.5)
    s = torch.full((1, 1), 0.5 / 6.3)  # every weight has u = 6.3: rounds up to 7 w.p. 0.3
    a = rounding.bsr_codes(w, s, 7, key=11).double() - 6 - 0.3  # round-up indicator minus p
    b = rounding.bsr_codes(w, s, 7, key=12).double() - 6 - 0.3
    n = a.numel()
    bound = 5 / n**0.5  # 5 sd of a sample correlation under independence
    neighbours = (a[0, 1:] * a[0, :-1]).mean() / a.var()
    members = (a * b).mean() / (a.std() * b.std())
    assert abs(float(neighbours)) < bound and abs(float(members)) < bound
    assert abs(float(a.mean())) < 5 * (0.21 / n) ** 0.5  # P(up) = 0.3


THREADS_SCRIPT = """
import json, torch
torch.set_num_threads(1)
from lpe.formats.number_formats import get_format, int_format
from lpe.members.files import quantize
from lpe.models.factory import create_model
state = create_model("vit_mini_t", 10, (1, 1, 40), seed=0).state_dict()
seen = [torch.get_num_threads()]
for fmt in (int_format(5), get_format("fp4_e2m1"), get_format("mxfp4")):
    quantize(state, fmt, "bsr", seed=1)
    seen.append(torch.get_num_threads())
import numba
print(json.dumps({"torch": seen, "numba": numba.get_num_threads(),
                  "numba_default": numba.config.NUMBA_NUM_THREADS}))
"""


def test_drawing_members_leaves_the_callers_thread_counts_as_they_were():
    """numba's threading layer, started by the first parallel kernel, used to set torch's thread
    count to every core (1 -> 2 here): a user's program ran oversubscribed after one member."""
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], capture_output=True, text=True,
                         check=True)  # fmt: skip
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["torch"] == [1, 1, 1, 1]
    assert seen["numba"] == seen["numba_default"]  # numba's own count untouched
