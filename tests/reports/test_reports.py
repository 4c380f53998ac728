"""Tables, figure and claims from a hand-made scores table (no training involved)."""

import numpy as np
import pandas as pd
import pytest
import torch

from lpe.models.checkpoints import save_checkpoint
from lpe.models.factory import create_model
from lpe.reports.claims import (
    claim1,
    claim2,
    claim3,
    claim4,
    claim7,
    claim8,
    claim9,
    over_checkpoints,
    report,
    student_factor,
    summary,
    with_training_bands,
)
from lpe.reports.figures import nll_vs_ensemble_size, nll_vs_inference_time
from lpe.reports.table1 import table1, to_latex, to_markdown
from lpe.stages.score import COLUMNS


def rows(model, params, fp32, per_precision):
    """per_precision: {precision: (rtn_nll, [bsr nll per seed at M=2], bsr avg_loss)}."""
    base = {
        "model": model,
        "optimizer": "adamw",
        "params": params,
        "err": 10.0,
        "ece": 0.01,
        "brier": 0.1,
        "backward_passes": 100,
    }
    out = [
        {
            **base,
            "precision": "fp32",
            "method": "fp32",
            "seed": 0,
            "members": 1,
            "nll": fp32,
            "avg_loss": fp32,
            "ambiguity": 0.0,
            "memory_bits": 32 * params,
        }
    ]
    for precision, (rtn, bsr, avg) in per_precision.items():
        b = int(precision[3:])
        out.append(
            {
                **base,
                "precision": precision,
                "method": "rtn",
                "seed": 0,
                "members": 1,
                "nll": rtn,
                "avg_loss": rtn,
                "ambiguity": 0.0,
                "memory_bits": b * params,
            }
        )
        for seed, nll in enumerate(bsr):
            for m, value in ((1, avg), (2, nll)):
                out.append(
                    {
                        **base,
                        "precision": precision,
                        "method": "lpe-bsr",
                        "seed": seed,
                        "members": m,
                        "nll": value,
                        "avg_loss": avg,
                        "ambiguity": avg - value,
                        "memory_bits": m * b * params,
                    }
                )
    return out


@pytest.fixture
def scores():
    data = rows(
        "small",
        1000,
        0.50,
        {"int6": (0.51, [0.505, 0.507], 0.52), "int4": (0.60, [0.55, 0.56], 0.62)},
    )
    data += rows(
        "large",
        9000,
        0.30,
        {"int6": (0.31, [0.30, 0.302], 0.33), "int4": (0.40, [0.29, 0.295], 0.45)},
    )
    frame = pd.DataFrame(data)
    frame["ens_loss"] = frame["nll"]
    frame["forward_passes"] = frame["members"]
    return frame.reindex(columns=COLUMNS)  # no controls: NaN (score files made without them)


def test_table1_rows_and_seed_statistics(scores):
    t = table1(scores)
    assert t["model"].tolist() == ["small"] * 5 + ["large"] * 5  # smallest model first
    assert t["precision"].tolist()[:5] == ["fp32", "int6", "int6", "int4", "int4"]
    assert t["method"].tolist()[:3] == ["fp32", "rtn", "lpe-bsr"]
    bsr = t[(t["model"] == "large") & (t["precision"] == "int4") & (t["method"] == "lpe-bsr")]
    assert bsr["members"].item() == 2 and bsr["seeds"].item() == 2
    assert bsr["nll_mean"].item() == pytest.approx(0.2925)
    assert bsr["nll_std"].item() == pytest.approx(pd.Series([0.29, 0.295]).std())
    assert bsr["memory_mbit"].item() == pytest.approx(2 * 4 * 9000 / 1e6)
    md, tex = to_markdown(t), to_latex(t)
    assert "0.2925 ± 0.0035" in md and r"0.2925 $\pm$ 0.0035" in tex
    assert md.count("\n") == 2 + len(t)


def test_claims_verdicts_follow_the_numbers(scores):
    s = summary(scores)
    assert claim1(s).verdict == "reproduced"  # every LPE-BSR beats its RTN
    # gains: int6 small 0.004 -> large 0.009; int4 small 0.045 -> large 0.1075
    assert claim2(s).verdict == "reproduced (size: reproduced; precision: reproduced)"
    # bands: 2 standard errors over the 2 seeds, e.g. large INT-6 seeds 0.300, 0.302 -> +-0.002
    c3 = claim3(s)
    # two parts, a check each per row: the ensemble beats FP32 (small: worse; large INT-6: 0.301
    # vs 0.300, inside its band +-0.002; large INT-4: 0.2925 < 0.30 by more than its band), and
    # each member is worse (every average loss is above FP32's)
    assert [c.outcome for c in c3.checks] == [
        "fails", "holds", "fails", "holds", "within noise", "holds", "holds", "holds"
    ]  # fmt: skip
    assert c3.part_verdicts() == {
        "the ensemble beats FP32": "partially reproduced", "each member is worse": "reproduced"
    }  # fmt: skip
    assert c3.verdict == ("partially reproduced (the ensemble beats FP32: partially reproduced; "
                          "each member is worse: reproduced)")  # fmt: skip
    assert c3.checks[4].parts[0] == pytest.approx((-0.001, 0.002))
    assert c3.checks[4].leaning == "against"
    text = report(scores)
    assert "each member is worse: reproduced) | 5 of 7 | 1 | 1 |" in text and "0.29250" in text
    assert "(5 of 7 decided checks hold; 1 within noise, 1 leaning against)" in text
    assert "- **within noise, leaning against**: large INT6: LPE-BSR (M=2)" in text


def calibrated(scores, fp32_ts, bsr_shift):
    """``scores`` with the controls: FP32 scaled to ``fp32_ts`` (per model), every LPE-BSR NLL
    scaled by ``bsr_shift`` below its own, RTN by nothing."""
    out = scores.copy()
    out["temperature"], out["infer_us"] = 1.5, 10.0
    out["nll_ts"] = out["nll"] - out["method"].map({"lpe-bsr": bsr_shift}).fillna(0.0)
    for model, value in fp32_ts.items():
        out.loc[(out["model"] == model) & (out["method"] == "fp32"), "nll_ts"] = value
    out["ece_ts"] = out["ece"]
    return out


def test_claim9_asks_whether_the_gain_is_more_than_calibration(scores):
    # large INT-4: LPE-BSR 0.2925 beats FP32 0.30 (claim 3 holds), but a temperature brings FP32
    # to 0.28: the whole gain was calibration, and scaled LPE-BSR (0.2825) does not beat it either
    s = summary(calibrated(scores, {"small": 0.49, "large": 0.28}, bsr_shift=0.01))
    c9 = claim9(s)
    large_int4 = [c for c in c9.checks if c.text.startswith("large INT-4")]
    assert [c.outcome for c in large_int4] == ["fails", "within noise"]
    assert large_int4[0].parts[0][0] == pytest.approx(0.28 - 0.2925)
    assert "(T = 1.500)" in large_int4[0].text
    # a gain beyond calibration: FP32 scaled only to 0.299 -> both checks hold at large INT-4
    s = summary(calibrated(scores, {"small": 0.49, "large": 0.299}, bsr_shift=0.001))
    assert [c.outcome for c in claim9(s).checks if c.text.startswith("large INT-4")] == [
        "holds",
        "holds",
    ]
    text = report(calibrated(scores, {"small": 0.49, "large": 0.28}, bsr_shift=0.01))
    assert "## Claim 9: (control of claim 3" in text and "| 9 | " in text
    assert "## Claim 9" not in report(scores)  # no calibration split scored: no control claim


def test_table1_shows_temperature_scaled_rows_and_the_inference_cost(scores):
    table = table1(calibrated(scores, {"small": 0.49, "large": 0.28}, bsr_shift=0.01))
    fp32 = table[(table["model"] == "large") & (table["method"].str.startswith("fp32"))]
    assert list(fp32["method"]) == ["fp32", "fp32+ts"]
    assert list(fp32["nll_mean"]) == [0.30, 0.28] and fp32["temperature_mean"].isna().tolist() == [
        True,
        False,
    ]
    md = to_markdown(table)
    assert "| FP32 + TS |" in md and "| 10.00 µs |" in md and "| T |" in md
    assert "LPE-BSR + TS" in md and "| Forward passes |" in md


def test_claim2_fails_when_the_gain_shrinks_with_size(scores):
    shrunk = scores.copy()
    large_bsr = (shrunk["model"] == "large") & (shrunk["method"] == "lpe-bsr")
    shrunk.loc[large_bsr & (shrunk["members"] == 2), "nll"] += 0.0085  # int6 gain 0.0005
    verdicts = [c.outcome for c in claim2(summary(shrunk)).checks]
    assert verdicts[0] == "fails"  # INT-6: 0.004 -> 0.0005, a drop beyond the band 0.0028
    c2 = claim2(summary(shrunk))
    assert c2.part_verdicts()["size"] in ("not reproduced", "partially reproduced")
    assert c2.verdict.startswith("partially reproduced (size: ")  # precision still holds


def test_claim1_not_reproduced_when_rtn_wins(scores):
    worse = scores.copy()
    worse.loc[worse["method"] == "lpe-bsr", "nll"] += 1.0
    assert claim1(summary(worse)).verdict == "not reproduced"


def test_a_gain_inside_the_seed_band_is_within_noise_and_undecided(scores):
    close = scores.copy()
    bsr = (close["method"] == "lpe-bsr") & (close["members"] == 2)
    # every gain shrinks to 0.5 band: small INT-6 seeds 0.505, 0.507 -> band 0.002; RTN 0.51
    close.loc[bsr, "nll"] += close.loc[bsr].apply(
        lambda r: {("small", "int6"): 0.003, ("small", "int4"): 0.04,
                   ("large", "int6"): 0.008, ("large", "int4"): 0.105}[(r.model, r.precision)],
        axis=1,
    )  # fmt: skip
    claim = claim1(summary(close))
    assert [c.outcome for c in claim.checks] == ["within noise"] * 4
    assert claim.verdict == "undecided (within noise)"
    assert "(0 of 0 decided checks hold; 4 within noise, 0 leaning against)" in claim.markdown()


def test_claim7_holds_when_the_members_alone_are_no_better_than_rtn(scores):
    s = summary(scores)
    # small INT-6: RTN 0.51, average member loss 0.52 (> RTN by 0.01, band 0): all of the gain
    # 0.004 is ambiguity (0.014)
    claim = claim7(s)
    assert [c.outcome for c in claim.checks] == ["holds"] * 4
    assert "+0.01000" in claim.checks[0].text and "AMB 0.01400" in claim.checks[0].text
    better_members = scores.copy()
    better_members.loc[better_members["method"] == "lpe-bsr", "avg_loss"] -= 0.045
    outcomes = [c.outcome for c in claim7(summary(better_members)).checks]
    assert outcomes == ["fails", "fails", "fails", "holds"]  # large INT-4: 0.40 < 0.405


def test_figure_has_a_panel_per_model_and_precision(scores):
    fig = nll_vs_ensemble_size(scores)
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == sorted(
        ["small (1k), INT-6", "small (1k), INT-4", "large (9k), INT-6", "large (9k), INT-4"]
    )
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["LPE-BSR (mean ± sd)", "RTN", "FP32"]


def bma_scores(lpe_nll: float, bma_nll: float) -> pd.DataFrame:
    """LPE-BSR INT-5 and BMA ensembles of 4 members per seed (2 seeds), params 1000.

    An LPE-BSR member costs 5 bits per parameter, a BMA member 32: the LPE-BSR ensemble of 4
    (20000 bits) affords at most a BMA ensemble of 1 (32000 > 20000, so 1 as the floor).
    """
    out = []
    for optimizer in ("swag", "ivon"):
        for seed in (0, 1):
            for m in range(1, 5):
                for method, nll, bits in (
                    ("lpe-bsr", lpe_nll, 5),
                    (f"{optimizer}-bma", bma_nll, 0),
                ):
                    out.append({
                        "model": "m", "optimizer": optimizer, "params": 1000,
                        "precision": f"int{bits}" if bits else "fp32", "method": method,
                        "seed": seed, "members": m,
                        "nll": nll + 0.1 / m + 0.001 * seed,  # larger ensembles are better
                        "memory_bits": m * (bits or 32) * 1000,
                    })  # fmt: skip
    return pd.DataFrame(out)


def test_claim4_compares_at_equal_size_and_at_equal_memory():
    better = claim4(bma_scores(lpe_nll=0.50, bma_nll=0.51), fmt="int5")
    assert better.verdict.startswith("reproduced (equal size: reproduced;")
    assert len(better.checks) == 4
    texts = [c.text for c in better.checks]
    assert "equal size M=4" in texts[0] and "LPE-BSR INT-5 M=4" in texts[1]
    assert "vs BMA M=1" in texts[1]  # the most BMA members that fit in 20000 bits, at least 1
    # 0.5% worse at equal size is still competitive; at equal memory it is compared with BMA M=1
    close = claim4(bma_scores(lpe_nll=0.5125, bma_nll=0.51), fmt="int5")
    assert [c.outcome for c in close.checks] == ["holds"] * 4
    worse = claim4(bma_scores(lpe_nll=0.60, bma_nll=0.51), fmt="int5")
    assert worse.verdict.startswith("not reproduced (")


def test_claim4_is_not_reproduced_without_scores_at_the_precision():
    claim = claim4(bma_scores(0.5, 0.5), fmt="int4")
    assert claim.verdict.startswith("not reproduced (")
    assert "no LPE-BSR INT-4 or BMA scores" in claim.checks[0].text


def test_figure_plots_the_scores(scores):
    # each panel: the LPE-BSR line is the mean NLL over seeds per size; RTN and FP32 their NLL
    fig = nll_vs_ensemble_size(scores)
    params = scores.groupby("model")["params"].first()
    for ax in fig.axes:
        name, precision = ax.get_title().split(" (")[0], "int" + ax.get_title().split("INT-")[1]
        assert f"({params[name] / 1e3:.0f}k)" in ax.get_title()
        here = scores[scores["model"] == name]
        bsr = here[(here["method"] == "lpe-bsr") & (here["precision"] == precision)]
        mean = bsr.groupby("members")["nll"].mean()
        line, rtn, fp32 = ax.get_lines()[:3]
        assert list(line.get_xdata()) == mean.index.tolist()
        assert list(line.get_ydata()) == pytest.approx(mean.tolist())
        rtn_nll = here[(here["method"] == "rtn") & (here["precision"] == precision)]["nll"]
        assert list(rtn.get_ydata()) == pytest.approx([rtn_nll.mean()] * 2)
        assert list(fp32.get_ydata()) == pytest.approx(
            [here[here["method"] == "fp32"]["nll"].mean()] * 2
        )


def test_table1_and_the_claims_report_show_each_models_convergence_gate(scores, tmp_path):
    gates = {"small": (0.004, 0.01, True), "large": (0.03, 0.0, False)}
    t = table1(scores, gates)
    md = to_markdown(t)
    assert "Converged (best val NLL change over the last 20% of epochs" in md
    assert "| yes (-0.40%; +1.00%) |" in md and "| NO (-3.00%; +0.00%) |" in md
    model = create_model("vit_mini_t", 10, (1, 1, 40))
    info = {"model": "vit_mini_t", "num_classes": 10, "input_shape": [1, 1, 40],
            "backward_passes": 1}  # fmt: skip
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, {**info, "val_nll_curve": [1.0, 0.5, 0.4, 0.35, 0.3]})
    text = report(scores, checkpoints=[str(path)])
    assert "**Convergence gate FAILED for vit_mini_t**" in text.split("## Claim 1")[0]
    assert "| vit_mini_t | -14.29% | +0.00% | FAILS |" in text


def test_claim8_widens_its_bands_by_the_spread_over_training_seeds(scores):
    # "small" trained again: INT-6 gain -0.005 there, +0.005 in the main run (BSR seed 0)
    again = pd.DataFrame(rows("small", 1000, 0.50, {"int6": (0.51, [0.515], 0.52),
                                                    "int4": (0.60, [0.55], 0.62)}))  # fmt: skip
    s = with_training_bands(summary(scores), scores, [again])
    small6 = s[(s["model"] == "small") & (s["precision"] == "int6")].iloc[0]
    assert small6["gain_train_band"] == pytest.approx(2 * pd.Series([0.005, -0.005]).std())
    assert small6["train_seeds"] == 2
    assert (s[s["model"] == "large"]["gain_train_band"] == 0).all()  # not retrained
    check = claim8(s).checks[0]  # small INT-6: gain 0.004 inside sqrt(0.002^2 + 0.0141^2)
    assert check.outcome == "within noise" and claim8(summary(scores)).checks[0].outcome == "holds"
    # claim 2's precision step of "small": 0.045 - 0.004 in the main run, 0.05 - (-0.005) again
    step = 2 * pd.Series([0.05 - 0.005, 0.05 + 0.005]).std()
    assert small6["step_train_band"] == pytest.approx(step)


def _copies(gains: list[float]) -> list[pd.DataFrame]:
    """Retrained copies of "small" whose INT-6 LPE-BSR gains over RTN (0.51) are ``gains``."""
    return [pd.DataFrame(rows("small", 1000, 0.50, {"int6": (0.51, [0.51 - g], 0.52),
                                                    "int4": (0.60, [0.55], 0.62)}))
            for g in gains]  # fmt: skip


def test_claims_are_decided_on_the_mean_margin_over_every_trained_model(scores):
    # the main run's INT-6 gain at its first BSR seed is 0.005; four copies agree on about that
    s = over_checkpoints(summary(scores), scores, _copies([0.006, 0.004, 0.005, 0.007]))
    small6 = s[(s["model"] == "small") & (s["precision"] == "int6")].iloc[0]
    each = [0.005, 0.006, 0.004, 0.005, 0.007]
    assert small6["gain_each"] == pytest.approx(each)  # the main run's first, paired margins
    assert small6["gain_mean"] == pytest.approx(np.mean(each))
    # Student's t with 4 degrees of freedom (2.776), times the standard error of the mean
    assert small6["gain_band"] == pytest.approx(2.776 * np.std(each, ddof=1) / 5**0.5, rel=1e-3)
    check = claim1(s).checks[0]
    assert check.outcome == "holds"
    assert check.parts[0][0] == pytest.approx(np.mean(each))
    assert "(per checkpoint: +0.00500, +0.00600, +0.00400, +0.00500, +0.00700)" in check.text
    assert claim1(s).checks[2].text.count("per checkpoint") == 0  # "large": trained once
    # copies that disagree: the mean is positive but the t band over 5 models covers zero
    spread = over_checkpoints(summary(scores), scores, _copies([-0.01, 0.02, -0.008, 0.012]))
    assert claim1(spread).checks[0].outcome == "within noise"
    # three models buy little: the same agreeing margins over 3 models, t(2) = 4.30
    few = over_checkpoints(summary(scores), scores, _copies([0.006, 0.004]))
    assert student_factor(3) == pytest.approx(4.303, rel=1e-3)
    assert few.iloc[0]["gain_band"] > small6["gain_band"]
    text = report(scores, retrained=_copies([0.006, 0.004, 0.005, 0.007]))
    assert "(train_noise; trained models in brackets): small (5)." in text
    assert "large trained once, their bands cover the draws only" in text
    assert "Student's t" in text


def test_the_inference_figure_has_a_panel_per_model_and_needs_measured_times(scores):
    fig = nll_vs_inference_time(calibrated(scores, {"small": 0.49, "large": 0.28}, 0.01))
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert {"FP32", "FP32 + TS", "LPE-BSR INT-4", "LPE-BSR INT-4 + TS"} <= set(labels)
    with pytest.raises(ValueError, match="no inference times"):
        nll_vs_inference_time(scores)


def shared_rows(lpe_nll: float, other_nll: float, lpe_members: int = 40) -> pd.DataFrame:
    """LPE-BSR INT-5 (2 seeds) and SWAG BMA (one member = one FP32 model of 1000 weights).

    An LPE-BSR member is 5000 bits as a file; stored as one shared base, M members cost
    5000 + 1000 M bits (the base, one plane each): M=40 is 45000 bits, where one BMA member
    (32000) fits and two (64000) do not.
    """
    out = []
    for seed in (0, 1):
        for m in range(1, lpe_members + 1):
            nll = lpe_nll + 0.1 / m + 0.001 * seed
            out.append({"optimizer": "swag", "method": "lpe-bsr", "precision": "int5",
                        "seed": seed, "members": m, "nll": nll, "memory_bits": 5000 * m,
                        "memory_bits_shared": 5000 + 1000 * m if m > 1 else 5000})  # fmt: skip
        for m in range(1, 5):
            out.append({"optimizer": "swag", "method": "swag-bma", "precision": "fp32",
                        "seed": seed, "members": m, "nll": other_nll + 0.1 / m + 0.001 * seed,
                        "memory_bits": 32000 * m, "memory_bits_shared": 32000 * m})  # fmt: skip
    frame = pd.DataFrame(out)
    frame["model"], frame["params"] = "m", 1000
    return frame


def test_claim10_compares_at_equal_memory_under_the_shared_base_accounting(scores):
    from lpe.reports.claims import claim10

    better = claim10(scores, shared_rows(0.40, 0.45), "int5", None, "int5")
    (check,) = better.checks
    assert check.outcome == "holds" and better.number == 10
    assert "M=40 as one shared base (0.01 MB)" in check.text  # 45000 bits
    assert "vs SWAG BMA M=1 (the largest that fits" in check.text
    worse = claim10(scores, shared_rows(0.60, 0.45), "int5", None, "int5")
    assert worse.verdict == "not reproduced"
    small = claim10(scores, shared_rows(0.40, 0.45, lpe_members=4), "int5", None, "int5")
    assert "none fits" in small.checks[0].text  # 9000 bits: not even one FP32 model


def test_shared_memory_is_a_column_of_table1_and_counts_members_in_an_fp32_model(scores):
    from lpe.reports.claims import members_in_fp32_memory

    shared = scores.copy()
    bits = shared["precision"].str[3:].replace("", "32").astype(int)
    lpe = (shared["method"] == "lpe-bsr") & (shared["members"] > 1)  # base + a plane each
    shared["memory_bits_shared"] = shared["memory_bits"]
    shared.loc[lpe, "memory_bits_shared"] = (bits + shared["members"]) * shared["params"]
    three = shared[lpe].assign(members=3)  # the size-2 rows again as size 3
    three["memory_bits"] = 3 * bits[three.index] * three["params"]
    three["memory_bits_shared"] = (bits[three.index] + 3) * three["params"]
    shared = pd.concat([shared, three], ignore_index=True)
    t = table1(shared)
    row = t[(t["model"] == "large") & (t["precision"] == "int4") & (t["method"] == "lpe-bsr")]
    assert row["members"].item() == 3
    assert row["memory_mbit_shared"].item() == pytest.approx((4 + 3) * 9000 / 1e6)
    assert row["memory_mbit"].item() == pytest.approx(3 * 4 * 9000 / 1e6)
    assert "Memory, shared base (Mbit)" in to_markdown(t)
    assert "Memory, shared base" not in to_markdown(table1(scores))  # older scores: absent
    # an FP32 model is 32 bits a weight: the base and plane 1 take b + 1, each further plane 1
    assert members_in_fp32_memory(shared) == ["small INT-6: 26", "small INT-4: 28",
                                              "large INT-6: 26", "large INT-4: 28"]  # fmt: skip
    assert members_in_fp32_memory(scores.assign(memory_bits_shared=1)) == []  # no sizes 2, 3


def test_the_score_stage_sums_shared_bits_of_the_first_members():
    from lpe.stages.score import score_run

    log_probs = torch.log_softmax(torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0)),
                                  dim=-1).numpy()  # fmt: skip
    run = {"log_probs": log_probs, "labels": np.array([0, 1, 2, 3, 0]),
           "member_bits": np.array([50, 50, 50]), "bits": np.asarray(4),
           "method": np.asarray("lpe-bsr"), "seed": np.asarray(0), "model": np.asarray("m"),
           "params": np.asarray(10), "backward_passes": np.asarray(7)}  # fmt: skip
    assert [r["memory_bits_shared"] for r in score_run(run)] == [50, 100, 150]  # none shared
    run["member_shared_bits"] = np.array([60, 10, 10])
    rows = score_run(run)
    assert [r["memory_bits_shared"] for r in rows] == [50, 70, 80]  # one member: itself
    assert [r["memory_bits"] for r in rows] == [50, 100, 150]


def test_claim10_takes_the_smallest_ensemble_when_none_fits_and_sizes_start_above_one(scores):
    from lpe.reports.claims import claim10

    rows = shared_rows(0.40, 0.45, lpe_members=4)  # 9000 bits: not one FP32 model
    bma = rows["method"] == "swag-bma"
    rows.loc[bma, "members"] *= 2  # two draws per run, as MultiIVON's sources
    rows.loc[bma, "memory_bits"] *= 2
    (check,) = claim10(scores, rows, "int5", None, "int5").checks
    assert "vs SWAG BMA M=2 (none fits" in check.text and "0.01 MB" in check.text


def test_a_claim_of_two_parts_is_reproduced_only_when_both_are(scores):
    # the case: the gain grows as precision drops (decided) while every size step leans
    # the other way inside its band: the precision part is reproduced, the size part undecided
    # and counted as leaning against, so the claim is not "reproduced"
    flat = scores.copy()
    large_bsr = (flat["model"] == "large") & (flat["method"] == "lpe-bsr") & (flat["members"] == 2)
    # large INT-6 gain 0.004 - 0.0005 and INT-4 gain 0.045 - 0.0015: both just below small's
    flat.loc[large_bsr & (flat["precision"] == "int6"), "nll"] += 0.0055
    flat.loc[large_bsr & (flat["precision"] == "int4"), "nll"] += 0.064
    c2 = claim2(summary(flat))
    size = c2.part_checks("size")
    assert [c.outcome for c in size] == ["within noise", "within noise"]
    assert [c.leaning for c in size] == ["against", "against"]
    assert c2.part_verdicts() == {"size": "undecided (within noise)", "precision": "reproduced"}
    assert c2.verdict.startswith("partially reproduced (size: undecided")
    assert c2.leaning_against() == 2
    text = c2.markdown()
    assert (
        "- part *size*: **undecided (within noise)** (0 of 0 decided checks hold; 2 within "
        "noise, 2 leaning against)" in text
    )
    assert "- part *precision*: **reproduced**" in text


def test_a_check_leans_for_the_claim_only_when_every_part_does():
    from lpe.core.checks import Check

    assert Check("a", ((0.1, 1.0), (0.2, 1.0))).leaning == "for"
    assert Check("b", ((0.1, 1.0), (-0.2, 1.0))).leaning == "against"
    assert Check.of("c", -0.1, 1.0).markdown().startswith("- **within noise, leaning against**")
    assert Check.of("d", 2.0, 1.0).markdown().startswith("- **holds, leaning for**: d")


def test_a_claim_none_of_whose_parts_reproduces_is_not_reproduced():
    from lpe.core.checks import Check
    from lpe.reports.claims.claim import Claim

    def claim(*outcomes):  # one check per part, its margin giving the outcome (band 1)
        margins = {"holds": 2.0, "fails": -2.0, "within noise": 0.5}
        parts = tuple(f"p{i}" for i in range(len(outcomes)))
        checks = [Check.of("c", margins[o], 1.0, p) for o, p in zip(outcomes, parts, strict=True)]
        return Claim(5, "s", checks, parts=parts).verdict

    assert claim("within noise", "fails") == (
        "not reproduced (p0: undecided (within noise); p1: not reproduced)"
    )
    assert claim("holds", "within noise").startswith("partially reproduced (p0: reproduced")
    # the parts are always listed: another rounding moves their words, not the sentence
    assert claim("holds", "holds") == "reproduced (p0: reproduced; p1: reproduced)"
    assert claim("within noise", "within noise").startswith("undecided (within noise) (p0: ")
