"""The suite's checks on a user's own model: LPE-BSR against RTN, FP32 and the calibration
control, each with its noise band, and a warning for the regime where LPE-BSR cannot win.

A check's margin is a difference of mean NLL (positive when LPE-BSR is better) over the evaluated
images, paired image by image. Its band joins two noises in quadrature (``joint_band``):

- the images: NOISE_SE standard errors of the mean of the per-image differences (another set of
  images of the same classes would move the margin by about that much);
- the draw of the members: with several BSR seeds, NOISE_SE standard errors of the mean over the
  seeds of the ensemble's NLL (with one seed that noise is unknown, and the verdict says so).

Outcomes as in the claims report (``lpe.core.checks``): holds above the band, fails below minus
the band, within noise in between.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from lpe.core.checks import Check
from lpe.core.selection import NOISE_SE, band, joint_band

# "Far": LPE-BSR beats RTN when its members' diversity (the ambiguity: average member loss minus
# the ensemble's NLL) is larger than the gap between the average member loss and RTN's NLL. Over
# the suite's 20 measured model and format pairs (results/mini, M = 10) the ambiguity was at most
# 31% of RTN's NLL and LPE-BSR won every pair, with gaps of up to 25%. A gap above FAR_GAP is
# one its diversity has not been seen to close (EfficientNet-Lite0 from its published weights at
# INT-5: 135-184% over seeds and image sets, and it lost).
FAR_GAP = 0.30


def per_image_nll(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, C), (N,) -> (N,)`` float64 negative log-likelihood of each image's label."""
    return -log_probs.double().gather(-1, labels.long()[:, None]).squeeze(-1)


def paired_margin(better: torch.Tensor, worse: torch.Tensor) -> tuple[float, float]:
    """Mean of ``worse - better`` per-image NLLs and its image band (NOISE_SE standard errors)."""
    diff = worse - better
    n = diff.numel()
    sd = float(diff.std(unbiased=True)) if n > 1 else math.nan
    return float(diff.mean()), NOISE_SE * sd / math.sqrt(n) if n > 1 else math.inf


def lpe_checks(
    per_image: Mapping[str, torch.Tensor],
    bsr_seeds: Sequence[torch.Tensor],
    bsr_ts_seeds: Sequence[torch.Tensor] = (),
) -> list[Check]:
    """The checks of LPE-BSR against the other rows: ``per_image`` holds the per-image NLLs of
    ``fp32``, ``rtn`` and, with calibration, ``fp32+ts`` and ``rtn+ts``; ``bsr_seeds`` those of
    each seed's LPE-BSR ensemble, ``bsr_ts_seeds`` the same at their temperatures (the
    calibration control: is the gain more than calibration?)."""
    checks = []

    def check(text: str, seeds: Sequence[torch.Tensor], other: str) -> None:
        stacked = torch.stack(list(seeds))  # (S, N)
        mine = stacked.mean(0)
        margin, images = paired_margin(mine, per_image[other])
        if len(seeds) > 1:
            draws, note = band(float(stacked.mean(1).std(unbiased=True)), len(seeds)), ""
        else:
            draws, note = 0.0, "; one seed: the draw's noise is not in the band (--seeds)"
        checks.append(
            Check.of(
                f"{text}: NLL {float(mine.mean()):.4f} vs {float(per_image[other].mean()):.4f}"
                f" (images ±{images:.4f}, seeds ±{draws:.4f}{note})",
                margin,
                joint_band(images, draws),
            )
        )

    check("LPE-BSR beats RTN", bsr_seeds, "rtn")
    check("LPE-BSR beats FP32", bsr_seeds, "fp32")
    if bsr_ts_seeds:
        check("LPE-BSR+TS beats FP32+TS", bsr_ts_seeds, "fp32+ts")
        check("LPE-BSR+TS beats RTN+TS", bsr_ts_seeds, "rtn+ts")
    return checks


def far_from_rtn(avg_member_loss: float, rtn_nll: float) -> str | None:
    """A warning when the members' average loss is FAR_GAP or more above RTN's NLL (see there)."""
    gap = (avg_member_loss - rtn_nll) / rtn_nll
    if gap <= FAR_GAP:
        return None
    return (
        f"warning: the LPE-BSR members' average loss ({avg_member_loss:.4f}) is {100 * gap:.0f}% "
        f"above RTN's NLL ({rtn_nll:.4f}). LPE-BSR beats RTN only when its members' diversity "
        f"closes that gap, and on the suite's own models its diversity never exceeded 31% of "
        f"RTN's NLL (the warning starts at {100 * FAR_GAP:.0f}%): members this far off are the "
        "regime where LPE-BSR cannot win; try more bits or keep more tensors FP32 (--keep)"
    )
