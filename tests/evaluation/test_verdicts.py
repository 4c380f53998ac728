"""The checks on a user's model (lpe.evaluation.verdicts): paired margins with their image and
seed bands, three outcomes, and the far-from-RTN warning."""

import math

import pytest
import torch

from lpe.evaluation.verdicts import FAR_GAP, far_from_rtn, lpe_checks, paired_margin


def per_image(mean: float, n: int = 400, noise: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (mean + noise * torch.randn(n, generator=g, dtype=torch.float64)).abs()


def test_the_image_band_is_two_standard_errors_of_the_paired_differences():
    better, worse = per_image(1.0), per_image(1.0, seed=1)
    margin, band = paired_margin(better, worse)
    diff = worse - better
    assert margin == pytest.approx(float(diff.mean()))
    assert band == pytest.approx(2 * float(diff.std()) / math.sqrt(len(diff)))


def test_a_clear_gain_holds_a_clear_loss_fails_and_a_tie_is_within_noise():
    rtn, fp32 = per_image(1.0, seed=1), per_image(0.5, seed=2)
    seeds = [per_image(0.8, seed=10 + s) for s in range(3)]  # 0.2 below RTN, 0.3 above FP32
    checks = {c.text.split(":")[0]: c for c in lpe_checks({"rtn": rtn, "fp32": fp32}, seeds)}
    assert checks["LPE-BSR beats RTN"].outcome == "holds"
    assert checks["LPE-BSR beats FP32"].outcome == "fails"
    tie = lpe_checks({"rtn": per_image(0.8, seed=20), "fp32": fp32}, seeds)[0]
    assert tie.outcome == "within noise"


def test_the_seed_band_joins_the_image_band_and_one_seed_says_it_is_missing():
    rtn, fp32 = per_image(1.0, seed=1), per_image(1.0, seed=2)
    same = [per_image(0.9, seed=3)] * 3  # three seeds that agree: no draw noise
    spread = [per_image(0.9, seed=3) + shift for shift in (-0.05, 0.0, 0.05)]
    agreeing = lpe_checks({"rtn": rtn, "fp32": fp32}, same)[0]
    spreading = lpe_checks({"rtn": rtn, "fp32": fp32}, spread)[0]
    assert "seeds ±0.0000" in agreeing.text
    draws = 2 * 0.05 / math.sqrt(3)  # NOISE_SE standard errors of the mean of the seed means
    images = paired_margin(per_image(0.9, seed=3), rtn)[1]
    assert spreading.parts[0][1] == pytest.approx(math.hypot(images, draws), rel=1e-6)
    one = lpe_checks({"rtn": rtn, "fp32": fp32}, same[:1])[0]
    assert "one seed: the draw's noise is not in the band" in one.text


def test_the_calibration_control_is_checked_when_the_scaled_rows_exist():
    rows = {name: per_image(1.0, seed=i) for i, name in enumerate(("rtn", "fp32"))}
    assert len(lpe_checks(rows, [per_image(0.9)])) == 2
    rows.update({"fp32+ts": per_image(0.95, seed=5), "rtn+ts": per_image(0.97, seed=6)})
    texts = [c.text for c in lpe_checks(rows, [per_image(0.9)], [per_image(0.85)])]
    assert texts[2].startswith("LPE-BSR+TS beats FP32+TS") and texts[3].startswith(
        "LPE-BSR+TS beats RTN+TS"
    )


def test_the_warning_starts_beyond_the_far_gap():
    assert far_from_rtn(1.0 * (1 + FAR_GAP) - 1e-9, 1.0) is None
    assert far_from_rtn(1.2, 1.0) is None
    warning = far_from_rtn(2.275, 1.063)  # EfficientNet-Lite0 at INT-5 (issue 39)
    assert warning.startswith("warning:") and "114% above RTN's NLL" in warning
