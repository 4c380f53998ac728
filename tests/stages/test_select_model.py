"""bma.model's rule: the model whose LPE-BSR ensemble gains most over FP32 on validation,
averaged over ensemble seeds; ties within noise go to the fewest parameters."""

import pytest
import torch

from lpe.core import metrics
from lpe.data.datasets import build, save_splits
from lpe.formats.number_formats import int_format
from lpe.formats.policy import QuantPolicy
from lpe.members.files import member_seed, quantize
from lpe.models.checkpoints import save_checkpoint
from lpe.models.factory import create_model
from lpe.stages.select_model import choice_line, choose
from lpe.stages.select_model import main as select


def _checkpoint(path, name, seed):
    model = create_model(name, 10, (1, 1, 40), seed=seed)
    info = {"model": name, "num_classes": 10, "input_shape": [1, 1, 40], "backward_passes": 1}
    save_checkpoint(path, model, info)
    return model


def test_the_rule_picks_the_largest_validation_gain_and_says_when_the_config_differs(tmp_path):
    splits = build("mnist1d", train=10, val=50, test=10, seed=0)
    save_splits(tmp_path / "d.npz", splits)
    models = {n: _checkpoint(tmp_path / f"{n}.safetensors", n, 0)
              for n in ("vit_mini_t", "vit_mini_s")}  # fmt: skip
    gains = {}
    for name, model in models.items():  # the gains, recomputed here from their definition
        state = {k: v.clone() for k, v in model.state_dict().items()}
        x, y = splits.x["val"], splits.y["val"]
        with torch.no_grad():
            fp32 = metrics.score(torch.log_softmax(model.eval()(x), -1)[None], y)["nll"]
            members = []
            for k in range(3):
                member = quantize(state, int_format(3), "bsr", member_seed(0, k), QuantPolicy())
                member.load_into(model)
                members.append(torch.log_softmax(model(x), -1))
        gains[name] = fp32 - metrics.score(torch.stack(members), y)["nll"]
    best = max(gains, key=gains.get)
    other = min(gains, key=gains.get)
    args = ["--checkpoints", *(str(tmp_path / f"{n}.safetensors") for n in models),
            "--data", str(tmp_path / "d.npz"), "--format", "int3", "--members", "3", "--seeds", "0",
            "--device", "cpu", "--out", str(tmp_path / "choice.md")]  # fmt: skip
    select([*args, "--configured", best])
    text = (tmp_path / "choice.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| vit_mini_")]
    assert [row.rstrip(" |").split("| ")[-1] for row in rows] == [
        "yes" if name == best else "no" for name in models
    ]  # the rule's choice column
    assert f"Configured bma.model: {best}, the rule's choice." in text
    for name, gain in gains.items():
        assert f"{gain:+.5f}" in text, name
    # another configured model: the run goes on with it, and the file says so in one line
    select([*args, "--configured", other])
    line = (tmp_path / "choice.md").read_text().splitlines()[-1]
    assert line.startswith(f"**bma.model: the rule chooses {best} (gain {gains[best]:+.5f}")
    assert f"not the configured {other} (gain {gains[other]:+.5f}" in line
    assert line.endswith(f"the DAG goes on with {other}.**")
    with pytest.raises(ValueError, match="'vit_mini_b' is none of the checkpoints' models"):
        select([*args, "--configured", "vit_mini_b"])


def test_the_choice_line_says_whether_the_configured_model_is_within_the_tie_band():
    rows = [{"model": m, "gain": g, "band": 0.001} for m, g in (("t", 0.004), ("s", 0.0035))]
    assert choice_line(rows, "t", ["t"], "t") == "Configured bma.model: t, the rule's choice."
    assert "s (gain +0.00350 ± 0.00100), within the rule's tie band of" in choice_line(
        rows, "t", ["t", "s"], "s"
    )
    assert "outside the rule's tie band" in choice_line(rows, "t", ["t"], "s")


def test_a_gain_within_noise_of_the_largest_is_a_tie_that_goes_to_the_smaller_model():
    def row(model, params, gain, band):
        return {"model": model, "params": params, "gain": gain, "band": band}

    # gains and bands of the size of the mini models' (3 seeds)
    rows = [row("t", 15_154, 0.00438, 0.00256), row("s", 86_218, 0.00407, 0.00187),
            row("l", 673_834, 0.00100, 0.00105)]  # fmt: skip
    assert choose(rows) == ("t", ["t", "s"])
    # s larger and within noise: still t, the smaller one
    rows[1] = row("s", 86_218, 0.00500, 0.00187)
    assert choose(rows) == ("t", ["t", "s"])
    # s larger beyond the noise: s, alone
    rows[1] = row("s", 86_218, 0.00900, 0.00100)
    assert choose(rows) == ("s", ["s"])
    # no noise (one seed): only an exact tie is a tie
    assert choose([row("a", 2, 0.1, 0.0), row("b", 1, 0.09, 0.0)]) == ("a", ["a"])
