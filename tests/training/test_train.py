import io
import math

import pytest
import torch

from lpe.data.datasets import build, save_splits
from lpe.models.checkpoints import load_checkpoint
from lpe.stages.train import main
from lpe.training.loop import DivergenceError, lr_factor
from lpe.training.pretraining import TrainConfig, train


@pytest.fixture(scope="module")
def splits():
    return build("mnist1d", train=64, val=20, test=20, seed=0)


def test_backward_passes_are_counted(splits):
    cfg = TrainConfig(epochs=2, batch_size=16, warmup_epochs=0)
    _, summary, _ = train("vit_mini_t", splits, cfg, torch.device("cpu"))
    assert summary["backward_passes"] == 2 * math.ceil(64 / 16)


def test_same_seed_same_weights_other_seed_other_weights(splits):
    cfg = TrainConfig(epochs=1, batch_size=16)
    a, _, _ = train("vit_mini_t", splits, cfg, torch.device("cpu"))
    b, _, _ = train("vit_mini_t", splits, cfg, torch.device("cpu"))
    c, _, _ = train(
        "vit_mini_t", splits, TrainConfig(epochs=1, batch_size=16, seed=1), torch.device("cpu")
    )
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_training_reduces_the_loss(splits):
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-9)
    _, untrained, _ = train("vit_mini_t", splits, cfg, torch.device("cpu"))
    _, trained, _ = train(
        "vit_mini_t", splits, TrainConfig(epochs=15, batch_size=16, lr=3e-3), torch.device("cpu")
    )
    assert trained["val"]["nll"] < untrained["val"]["nll"]


def test_divergence_stops_with_a_message(splits):
    with pytest.raises(DivergenceError, match="lower train.lr"):
        train(
            "vit_mini_t", splits, TrainConfig(epochs=3, batch_size=16, lr=1e12), torch.device("cpu")
        )


def test_a_divergence_at_the_last_step_raises_the_divergence_error(splits, monkeypatch):
    # every loss is finite; only the last update breaks the weights (seen by no loss check)
    steps = 2 * math.ceil(64 / 16)

    class LastStepBreaks(torch.optim.AdamW):
        calls = 0

        def step(self, closure=None):
            out = super().step(closure)
            LastStepBreaks.calls += 1
            if LastStepBreaks.calls == steps:
                self.param_groups[0]["params"][0].data.fill_(float("inf"))
            return out

    monkeypatch.setattr(torch.optim, "AdamW", LastStepBreaks)
    cfg = TrainConfig(epochs=2, batch_size=16, warmup_epochs=0)
    with pytest.raises(DivergenceError, match=r"not finite after the last step .*lower train.lr"):
        train("vit_mini_t", splits, cfg, torch.device("cpu"))
    assert LastStepBreaks.calls == steps


def test_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"seed": -1}])
def test_bad_training_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_stage_writes_a_checkpoint_with_its_budget(tmp_path, splits):
    save_splits(tmp_path / "d.npz", splits)
    out = tmp_path / "ckpt.safetensors"
    main(
        [
            "--data",
            str(tmp_path / "d.npz"),
            "--model",
            "vit_mini_t",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    state, info = load_checkpoint(out)
    assert info.model == "vit_mini_t" and info.backward_passes == 2
    model = info.build()
    model.load_state_dict(state)  # strict: every tensor present and shaped right


def test_training_records_the_validation_curve_of_every_epoch(splits):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-3)
    model, summary, _ = train("vit_mini_t", splits, cfg, torch.device("cpu"), log=io.StringIO())
    curve = summary["val_nll_curve"]
    assert len(curve) == 3 and min(curve) == pytest.approx(summary["val"]["nll"])


def test_the_checkpoint_is_the_best_validation_epoch_and_the_last_is_returned(splits):
    cfg = TrainConfig(epochs=6, batch_size=16, lr=3e-3)
    model, summary, last = train("vit_mini_t", splits, cfg, torch.device("cpu"))
    curve = summary["val_nll_curve"]
    assert len(curve) == 6
    assert summary["best_epoch"] == 1 + curve.index(min(curve))
    assert summary["val"]["nll"] == min(curve)
    # the kept weights give the best epoch's validation NLL again (the evaluation is exact)
    from lpe.training.loop import evaluate

    assert evaluate(model, splits, "val", torch.device("cpu"))["nll"] == min(curve)
    kept = model.state_dict()
    differs = any(not torch.equal(kept[k], last[k]) for k in kept)
    assert differs == (summary["best_epoch"] != 6)
