import json

import numpy as np
import pandas as pd
import pytest
import torch

from lpe.core import metrics
from lpe.data.datasets import build, save_splits
from lpe.data.inputs import TensorData
from lpe.formats.number_formats import int_format
from lpe.formats.policy import QuantPolicy
from lpe.members.files import member_seed, quantize
from lpe.methods.gaussian_matched import matched_member
from lpe.methods.gaussian_noise import gaussian_member
from lpe.methods.mc_dropout import set_dropout
from lpe.models.factory import create_model
from lpe.reports.claims import claim6
from lpe.reports.table6 import chosen_settings, table6
from lpe.stages.baselines import check_candidates, choose_setting, ensemble
from lpe.stages.baselines import main as baselines

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def splits():
    return build("mnist1d", train=10, val=40, test=30, seed=0)


@pytest.fixture
def model_and_state():
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=0)
    return model, {n: t.clone() for n, t in model.state_dict().items()}


def test_gaussian_noise_has_the_configured_scale_on_quantized_tensors_only(model_and_state):
    model, state = model_and_state
    before = {n: t.clone() for n, t in model.state_dict().items()}
    after = gaussian_member(state, QuantPolicy(), scale=0.1, seed=3)
    assert all(torch.equal(t, before[n]) for n, t in model.state_dict().items())  # not written
    name = "blocks.0.mlp.fc1.weight"
    absmax = state[name].abs().amax(dim=1, keepdim=True)
    z = (after[name] - state[name]) / (0.1 * absmax)
    assert abs(z.std().item() - 1) < 0.05 and abs(z.mean().item()) < 0.05
    for kept in ("pos_embed", "head.weight", "blocks.0.norm1.weight"):
        assert torch.equal(after[kept], state[kept]), kept
    again = gaussian_member(state, QuantPolicy(), scale=0.1, seed=3)
    assert torch.equal(again[name], after[name])  # the same seed, the same member


def test_matched_noise_has_bsr_variance_per_weight(model_and_state):
    model, state = model_and_state
    name = "blocks.0.mlp.fc1.weight"
    step = state[name].abs().amax(dim=1, keepdim=True) / 31  # INT-6: qmax 31
    f = state[name] / step - (state[name] / step).floor()
    std = step * (f * (1 - f)).sqrt()
    draws = []
    for seed in range(200):
        draws.append(matched_member(state, QuantPolicy(), bits=6, seed=seed)[name] - state[name])
    noise = torch.stack(draws)  # (200, out, in)
    assert noise.mean().abs() < 0.02 * std.mean()  # unbiased, as BSR
    # the per-weight variance is s^2 f (1 - f): its ratio to the empirical one is ~1
    ratio = noise.var(0).sum() / (std**2).sum()
    assert abs(ratio.item() - 1) < 0.03
    # BSR's own per-weight variance is the same: draw BSR members and compare
    fmt = int_format(6)
    bsr = torch.stack([
        quantize(state, fmt, "bsr", seed, QuantPolicy()).state_dict()[name] - state[name]
        for seed in range(200)
    ])  # fmt: skip
    assert abs((bsr.var(0).sum() / (std**2).sum()).item() - 1) < 0.03
    assert torch.equal(model.state_dict()["head.weight"], state["head.weight"])  # kept


def test_the_bsr_baseline_draws_the_generate_stages_members(model_and_state, splits):
    model, state = model_and_state
    x = splits.x["val"]
    log_probs = ensemble(
        model, state, "lpe-bsr", 4, 2, seed=7, x=x, batch_size=16, device=CPU
    ).log_probs
    fmt = int_format(4)
    for k in range(2):
        quantize(state, fmt, "bsr", member_seed(7, k), QuantPolicy()).load_into(model)
        with torch.no_grad():
            expected = torch.log_softmax(model.eval()(x), -1)
        torch.testing.assert_close(log_probs[k], expected)


def test_matched_noise_takes_lpe_bsrs_chosen_precision(tmp_path, checkpoint, splits):
    data = tmp_path / "d.npz"
    save_splits(data, splits)
    common = ["--checkpoint", str(checkpoint), "--data", str(data), "--members", "2",
              "--seeds", "0", "--device", "cpu"]  # fmt: skip
    choice, copied = tmp_path / "bsr.json", tmp_path / "matched.json"
    baselines([*common, "--method", "lpe-bsr", "--candidates", "6", "3",
               "--select-out", str(choice), "--out", str(tmp_path / "b.npz")])  # fmt: skip
    bits = json.loads(choice.read_text())["setting"]
    with np.load(tmp_path / "b.npz") as f:
        assert str(f["method"]) == "lpe-bsr" and int(f["bits"]) == bits
        assert (f["member_bits"] < 32 * 16000).all()  # stored at INT-b, not FP32
    baselines([*common, "--method", "gaussian-matched", "--setting-file", str(choice),
               "--copy-choice-to", str(copied), "--out", str(tmp_path / "m.npz")])  # fmt: skip
    assert json.loads(copied.read_text())["setting"] == bits
    shown = chosen_settings([str(tmp_path / "b.npz"), str(tmp_path / "m.npz")])
    assert shown == {"lpe-bsr": f"precision INT-{bits:g}",
                     "gaussian-matched": f"variance of LPE-BSR INT-{bits:g}"}  # fmt: skip
    with np.load(tmp_path / "m.npz") as f:
        assert str(f["method"]) == "gaussian-matched" and float(f["setting"]) == bits
    with pytest.raises(SystemExit):  # matched noise has no candidates of its own
        baselines([*common, "--method", "gaussian-matched", "--candidates", "6"])


def test_dropout_at_rate_zero_is_the_model_and_above_zero_members_differ(model_and_state, splits):
    model, state = model_and_state
    x = splits.x["test"]
    reference = ensemble(
        model, state, "mc-dropout", 0.0, 1, seed=0, x=x, batch_size=16, device=CPU
    ).log_probs[0]
    with torch.no_grad():
        expected = torch.log_softmax(
            create_model("vit_mini_t", 10, (1, 1, 40), seed=0).eval()(x), -1
        )
    torch.testing.assert_close(reference, expected, rtol=1e-5, atol=1e-5)
    members = ensemble(
        model, state, "mc-dropout", 0.2, 2, seed=0, x=x, batch_size=16, device=CPU
    ).log_probs
    assert not torch.allclose(members[0], members[1])
    again = ensemble(
        model, state, "mc-dropout", 0.2, 2, seed=0, x=x, batch_size=16, device=CPU, calib_x=x[:5]
    )
    torch.testing.assert_close(again.log_probs, members)  # masks seeded per member
    # predicting a calibration split after each member leaves the test predictions unchanged
    assert again.calibration.shape == (2, 5, 10)
    set_dropout(model, 0.3)
    assert model.blocks[0].attn.attn_drop.p == 0.0 and model.blocks[0].mlp.drop1.p == 0.3


def test_the_setting_is_chosen_by_validation_nll(model_and_state, splits):
    model, state = model_and_state
    data = TensorData(splits)
    best, scores = choose_setting(
        model, state, "gaussian-noise", [0.01, 0.5], 2, seed=0, data=data, batch_size=16, device=CPU
    )
    direct = ensemble(
        model, state, "gaussian-noise", 0.5, 2, seed=0, x=splits.x["val"], batch_size=16, device=CPU
    ).log_probs
    assert scores[0.5] == pytest.approx(metrics.score(direct, splits.y["val"])["nll"])
    assert best == min(scores, key=scores.get)


@pytest.mark.parametrize(
    ("method", "candidates", "message"),
    [
        ("gaussian-noise", [], "the search has no candidates"),
        ("mc-dropout", [0.1, 1.0], r"dropout rates must be in \[0, 1\)"),
        ("gaussian-noise", [-0.1], "scales must be >= 0"),
        ("lpe-bsr", [6, 4.5], "INT-b formats, int2..int16"),
        ("lpe-bsr", [1], "INT-b formats, int2..int16"),
    ],
)
def test_bad_candidates_are_refused(method, candidates, message):
    with pytest.raises(ValueError, match=message):
        check_candidates(method, candidates)


def test_the_stage_writes_test_predictions_and_the_chosen_setting(tmp_path, checkpoint, splits):
    data = tmp_path / "d.npz"
    save_splits(data, splits)
    out = tmp_path / "g.npz"
    baselines(["--checkpoint", str(checkpoint), "--data", str(data), "--method", "gaussian-noise",
               "--candidates", "0.01", "0.3", "--members", "2", "--seeds", "1",
               "--out", str(out), "--device", "cpu"])  # fmt: skip
    with np.load(out) as f:
        assert f["log_probs"].shape == (2, 30, 10) and str(f["method"]) == "gaussian-noise"
        assert float(f["setting"]) in (0.01, 0.3)
    assert "noise scale" in chosen_settings([str(out)])["gaussian-noise"]


def test_a_choice_made_once_is_shared_by_other_seeds(tmp_path, checkpoint, splits):
    data = tmp_path / "d.npz"
    save_splits(data, splits)
    common = ["--checkpoint", str(checkpoint), "--data", str(data), "--members", "2",
              "--device", "cpu"]  # fmt: skip
    choice = tmp_path / "choice.json"
    baselines([*common, "--method", "gaussian-noise", "--candidates", "0.01", "0.3", "--seeds", "0",
               "--select-out", str(choice)])  # fmt: skip
    chosen = json.loads(choice.read_text())
    best = min(chosen["validation_nll"].items(), key=lambda kv: kv[1])[0]
    assert chosen["setting"] == float(best) and chosen["seed"] == 0
    out = tmp_path / "g1.npz"
    baselines([*common, "--method", "gaussian-noise", "--setting-file", str(choice), "--seeds", "1",
               "--out", str(out)])  # fmt: skip
    with np.load(out) as f:
        assert float(f["setting"]) == chosen["setting"] and int(f["seed"]) == 1
    with pytest.raises(ValueError, match="chose a setting for 'gaussian-noise', not 'mc-dropout'"):
        baselines([*common, "--method", "mc-dropout", "--setting-file", str(choice), "--seeds", "1",
                   "--out", str(tmp_path / "d1.npz")])  # fmt: skip


def test_table6_and_claim6_compare_lpe_bsr_with_the_baselines():
    rows = []
    for method, precision, nll, bits in (("lpe-bsr", "int6", 0.40, 6), ("gaussian-noise", "fp32",
                                         0.42, 32), ("mc-dropout", "fp32", 0.39, 32),
                                         ("fp32", "fp32", 0.41, 32)):  # fmt: skip
        for seed in (0, 1):
            rows.append({"model": "m", "precision": precision, "method": method, "seed": seed,
                         "members": 4, "nll": nll + 0.001 * seed, "err": 10.0, "ece": 0.01,
                         "memory_bits": 4 * bits * 1000})  # fmt: skip
    scores = pd.DataFrame(rows)
    table = table6(scores, {"mc-dropout": "dropout rate 0.05"})
    assert table["method"].tolist() == ["fp32", "lpe-bsr", "gaussian-noise", "mc-dropout"]
    assert table.set_index("method").loc["mc-dropout", "setting"] == "dropout rate 0.05"
    claim = claim6(scores)
    # seeds differ by 0.001: band 2 x 0.000707 / sqrt(2) = 0.001 each, 0.0014 for a difference
    assert [c.outcome for c in claim.checks] == ["holds", "fails"]  # beats noise, not dropout
    # one part per baseline, each decided on its own check
    assert claim.verdict == (
        "partially reproduced (Gaussian noise: reproduced; MC dropout: not reproduced)"
    )


def test_a_choice_at_an_end_of_its_candidates_is_flagged_in_the_log_and_the_claims(
    tmp_path, checkpoint, splits, capsys
):
    from lpe.core.selection import at_an_end
    from lpe.reports.claims import choices_text

    assert at_an_end(0.01, [0.02, 0.01, 0.04]) and at_an_end(0.04, [0.02, 0.01, 0.04])
    assert not at_an_end(0.02, [0.02, 0.01, 0.04]) and not at_an_end(0.02, [0.02])
    data = tmp_path / "d.npz"
    save_splits(data, splits)
    choice = tmp_path / "choice.json"
    baselines(["--checkpoint", str(checkpoint), "--data", str(data), "--members", "2",
               "--device", "cpu", "--method", "gaussian-noise", "--candidates", "0.3", "0.01",
               "--seeds", "0", "--select-out", str(choice)])  # fmt: skip
    chosen = json.loads(choice.read_text())
    assert chosen["candidates"] == [0.01, 0.3]  # two candidates: either choice is an end
    assert f"WARNING: gaussian-noise {chosen['setting']} is at an end of its candidates" in (
        capsys.readouterr().err
    )
    assert choices_text([str(choice)]) == (
        f"noise scale {chosen['setting']:g} (an end of its candidates)"
    )
    chosen["candidates"] = [0.001, chosen["setting"], 1.0]  # inside a longer list: no flag
    choice.write_text(json.dumps(chosen))
    assert choices_text([str(choice)]) == f"noise scale {chosen['setting']:g}"
