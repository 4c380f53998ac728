"""Temperature scaling: the fit, and that only the calibration split enters it."""

import numpy as np
import pytest
import torch
from helpers import SMALL as SIZES
from helpers import run_generate, run_predict

from lpe.core import metrics
from lpe.data.datasets import build, load_splits, save_splits
from lpe.evaluation.temperature import T_MAX, T_MIN, fit_temperature, scaled
from lpe.stages.score import score_run


def tempered_sample(temperature: float, n: int = 20_000, classes: int = 10, seed: int = 0):
    """Logits ``z`` and labels drawn from ``softmax(z / temperature)``: the model ``z`` is
    miscalibrated by exactly ``temperature``."""
    gen = torch.Generator().manual_seed(seed)
    z = 3.0 * torch.randn(n, classes, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z / temperature, -1), 1, generator=gen).squeeze(-1)
    return torch.log_softmax(z, -1)[None], labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_that_generated_the_labels(true_t):
    log_probs, labels = tempered_sample(true_t)
    assert fit_temperature(log_probs, labels) == pytest.approx(true_t, rel=0.05)


def test_the_fit_is_the_minimum_of_the_nll():
    log_probs, labels = tempered_sample(1.7, n=3000, seed=1)
    t = fit_temperature(log_probs, labels)

    def nll(temperature):
        return metrics.nll(scaled(log_probs, temperature), labels)

    assert nll(t) < min(nll(t * 0.98), nll(t * 1.02))
    assert nll(t) < nll(1.0)  # a miscalibrated model gains from its temperature


def test_an_ensemble_gets_one_temperature_of_its_averaged_probabilities():
    members, labels = tempered_sample(2.0, n=4000, seed=2)
    two = torch.cat([members, members + 0.0])  # two identical members: the same ensemble
    assert fit_temperature(two, labels) == pytest.approx(fit_temperature(members, labels))
    assert scaled(two, 1.3).shape == (1, 4000, 10)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="fit_temperature needs"):
        fit_temperature(torch.zeros(5, 10), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="fit_temperature needs"):
        fit_temperature(torch.zeros(1, 5, 10), torch.zeros(4, dtype=torch.long))


def test_a_fit_stays_within_the_searched_range():
    log_probs, labels = tempered_sample(1.0, n=500)
    perfect = torch.log_softmax(1e3 * torch.nn.functional.one_hot(labels, 10).double(), -1)
    assert T_MIN <= fit_temperature(perfect[None], labels) <= T_MAX


def _run(calib, calib_labels, test, test_labels):
    return {
        "log_probs": test.numpy().astype(np.float32),
        "labels": test_labels.numpy(),
        "member_bits": np.asarray([32] * test.shape[0]),
        "bits": np.asarray(0),
        "method": np.asarray("fp32"),
        "seed": np.asarray(0),
        "model": np.asarray("m"),
        "params": np.asarray(1),
        "backward_passes": np.asarray(0),
        "member_seconds": np.full(test.shape[0], 0.5),
        "calibration_log_probs": calib.numpy().astype(np.float32),
        "calibration_labels": calib_labels.numpy(),
    }


def test_the_test_split_never_enters_the_fit():
    calib, calib_labels = tempered_sample(2.0, n=2000, seed=3)
    test, test_labels = tempered_sample(2.0, n=1000, seed=4)
    row = score_run(_run(calib, calib_labels, test, test_labels))[0]
    # another test split (other points, other labels): the same temperature
    other, other_labels = tempered_sample(0.5, n=700, seed=5)
    assert (
        score_run(_run(calib, calib_labels, other, other_labels))[0]["temperature"]
        == (row["temperature"])
    )
    # another calibration split: another temperature
    calib2, calib2_labels = tempered_sample(0.5, n=2000, seed=6)
    assert score_run(_run(calib2, calib2_labels, test, test_labels))[0]["temperature"] != (
        pytest.approx(row["temperature"], rel=0.1)
    )
    assert row["temperature"] == pytest.approx(2.0, rel=0.15)
    assert row["nll_ts"] < row["nll"]  # fit on other data of the same miscalibration
    assert row["infer_us"] == pytest.approx(0.5e6 / 1000)


def test_the_stage_calibrates_on_the_validation_split(tmp_path, checkpoint):
    data = tmp_path / "d.npz"
    save_splits(data, build("mnist1d", **SIZES))
    members = tmp_path / "members"
    run_generate(checkpoint, members, "--method", "bsr", "--format", "int4", "--members", 2)
    out = tmp_path / "bsr.npz"
    run_predict(checkpoint, data, out, "--members", members, "--calibrate")
    splits = load_splits(data)
    with np.load(out) as f:
        run = {k: f[k] for k in f.files}
    assert run["log_probs"].shape == (2, SIZES["test"], 10)
    assert run["calibration_log_probs"].shape == (2, SIZES["val"], 10)
    np.testing.assert_array_equal(run["calibration_labels"], splits.y["val"].numpy())
    assert run["member_seconds"].shape == (2,) and (run["member_seconds"] > 0).all()
    rows = score_run(run)
    assert [r["members"] for r in rows] == [1, 2] and all(r["temperature"] > 0 for r in rows)


def test_calibrate_refuses_a_non_test_evaluation_split(tmp_path, checkpoint):
    data = tmp_path / "d.npz"
    save_splits(data, build("mnist1d", **SIZES))
    with pytest.raises(SystemExit):
        run_predict(checkpoint, data, tmp_path / "x.npz", "--split", "val", "--calibrate")


def test_every_calibrating_stage_refuses_a_non_test_evaluation_split(tmp_path, checkpoint, capsys):
    import lpe.stages.baselines
    import lpe.stages.ensembles
    import lpe.stages.fast_predict

    data = tmp_path / "d.npz"
    save_splits(data, build("mnist1d", **SIZES))
    common = ["--data", str(data), "--split", "val", "--calibrate"]
    calls = {
        "ensembles": lambda: lpe.stages.ensembles.main(
            ["--checkpoint", str(checkpoint), *common, "--format", "int4", "--seeds", "0",
             "--members-out", "m", "--out", "p.npz"]),
        "baselines": lambda: lpe.stages.baselines.main(
            ["--checkpoint", str(checkpoint), *common, "--method", "gaussian-noise",
             "--candidates", "0.1", "--members", "1", "--seeds", "0", "--out", "b.npz"]),
        "fast": lambda: lpe.stages.fast_predict.main(["--sources", str(tmp_path), *common,
                                       "--out", "f.npz"]),
    }  # fmt: skip
    for stage, call in calls.items():
        with pytest.raises(SystemExit):
            call()
        assert "calibrate fits on the selection split" in capsys.readouterr().err, stage


def test_a_temperature_at_the_search_bound_is_flagged():
    from lpe.evaluation.temperature import at_bound, bound_warning

    # labels that contradict confident predictions: the NLL keeps falling as T grows
    logits = torch.tensor([[20.0, 0.0], [0.0, 20.0]] * 8)
    labels = torch.tensor([1, 0] * 8)
    t = fit_temperature(torch.log_softmax(logits, -1)[None], labels)
    assert at_bound(t) and t == pytest.approx(T_MAX, rel=1e-4)
    assert "fit at the search's bound (T = 20" in bound_warning("lpe-bsr+ts", t)
    assert at_bound(T_MIN) and not at_bound(1.3) and bound_warning("x", 1.3) is None
