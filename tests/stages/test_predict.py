import gc
import weakref

import numpy as np
import pytest
import torch
from helpers import SMALL, run_generate, run_predict

import lpe.evaluation.prediction
import lpe.members.sets
import lpe.stages.predict
from lpe.core.artifacts import ArtifactError
from lpe.data.datasets import build
from lpe.evaluation import spine
from lpe.evaluation.spine import predict_log_probs
from lpe.formats.number_formats import int_format
from lpe.members.files import load_member, member_seed, quantize
from lpe.members.shared_base import SharedBase
from lpe.models.checkpoints import load_checkpoint, save_checkpoint
from lpe.models.factory import create_model
from lpe.stages.score import score_files

SIZES = SMALL


def test_inputs() -> torch.Tensor:
    return build("mnist1d", **SIZES).x["test"]


test_inputs.__test__ = False  # a helper, not a test


def test_fp32_predictions_match_the_model(tmp_path, checkpoint, data):
    out = tmp_path / "fp32.npz"
    run_predict(checkpoint, data, out, "--batch-size", 7)
    with np.load(out) as f:
        log_probs, labels, bits = f["log_probs"], f["labels"], f["member_bits"]
        assert str(f["method"]) == "fp32" and int(f["backward_passes"]) == 7
    state, info = load_checkpoint(checkpoint)
    model = info.build()
    model.load_state_dict(state)
    with torch.no_grad():
        expected = torch.log_softmax(model.eval()(test_inputs()), dim=-1)
    assert log_probs.shape == (1, 30, 10) and labels.shape == (30,)
    np.testing.assert_allclose(log_probs[0], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert bits[0] == 32 * sum(t.numel() for t in state.values())


def test_member_predictions_use_each_members_weights(tmp_path, checkpoint, data):
    members = tmp_path / "members"
    run_generate(
        checkpoint, members, "--method", "bsr", "--format", "int3", "--seed", 1, "--members", 3
    )
    out = tmp_path / "bsr.npz"
    run_predict(checkpoint, data, out, "--members", members)
    with np.load(out) as f:
        log_probs = f["log_probs"]
        assert log_probs.shape == (3, 30, 10) and int(f["bits"]) == 3
    _, info = load_checkpoint(checkpoint)
    for k in range(3):
        member, _ = load_member(members / f"member{k:02d}.safetensors")
        model = info.build()
        model.load_state_dict(member.state_dict())
        expected = predict_log_probs(model, test_inputs(), 100, torch.device("cpu"))
        np.testing.assert_allclose(log_probs[k], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(log_probs[0], log_probs[1])
    scores = score_files([out])
    assert scores["members"].tolist() == [1, 2, 3]
    assert scores["method"].unique().tolist() == ["lpe-bsr"]
    assert scores["memory_bits"].tolist()[2] == 3 * scores["memory_bits"].tolist()[0]
    assert (scores["backward_passes"] == 7).all()  # LPE-BSR adds no training


def test_members_from_another_checkpoint_are_refused(tmp_path, checkpoint, data):
    members = tmp_path / "members"
    run_generate(checkpoint, members, "--method", "rtn", "--format", "int4")
    other = tmp_path / "other.safetensors"
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=1)  # not the fixture's weights
    info = {"model": "vit_mini_t", "num_classes": 10, "input_shape": [1, 1, 40],
            "backward_passes": 1}  # fmt: skip
    save_checkpoint(other, model, info)
    with pytest.raises(ArtifactError, match="another checkpoint"):
        run_predict(other, data, tmp_path / "p.npz", "--members", members)
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize("layout", ["files", "shared-base"])
def test_at_most_one_member_is_alive_during_prediction(tmp_path, checkpoint, monkeypatch, layout):
    """Members are read (or decoded) one at a time: when member k is, members < k are freed."""
    members = tmp_path / "members"
    run_generate(checkpoint, members, "--method", "bsr", "--format", "int4", "--members", 4,
                 "--layout", layout)  # fmt: skip
    alive = []
    where, name = (
        (lpe.members.sets, "load_member_of") if layout == "files" else (SharedBase, "member")
    )
    real_load = getattr(where, name)

    def tracking_load(*args):
        gc.collect()
        assert sum(ref() is not None for ref in alive) == 0, "an earlier member is still alive"
        member = real_load(*args)
        alive.append(weakref.ref(member))
        return member

    monkeypatch.setattr(where, name, tracking_load)
    done, _, _ = lpe.evaluation.prediction.predict_members(
        checkpoint, members, test_inputs(), 100, torch.device("cpu")
    )
    assert len(alive) == 4 and done.log_probs.shape == (4, 30, 10)


@pytest.mark.parametrize("members_per_call", [2, 3, 5])
def test_batched_and_one_at_a_time_evaluation_agree(checkpoint, members_per_call):
    state, info = load_checkpoint(checkpoint)
    fmt = int_format(4)
    members = [quantize(state, fmt, "bsr", member_seed(3, k)) for k in range(5)]
    x, cpu = test_inputs(), torch.device("cpu")
    calib = x[:11]

    def evaluate(per_call):
        model = info.build()
        return spine.evaluate(model, iter(members), spine.open_member(model), x, 7, cpu,
                              calibration_x=calib, members_per_call=per_call,
                              bits=lambda member: member.bits)  # fmt: skip

    one, batched = evaluate(1), evaluate(members_per_call)
    assert one.log_probs.shape == batched.log_probs.shape == (5, 30, 10)
    assert one.bits == batched.bits == [m.bits for m in members]
    torch.testing.assert_close(batched.log_probs, one.log_probs, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(one.log_probs[0], one.log_probs[1])  # a mix-up would show
    # the calibration split: the same members on other inputs, timed only on the evaluated split
    torch.testing.assert_close(one.calibration, one.log_probs[:, :11])
    torch.testing.assert_close(batched.calibration, one.calibration, rtol=1e-5, atol=1e-5)
    assert len(one.seconds) == len(batched.seconds) == 5 and min(one.seconds) > 0


def test_auto_evaluates_one_member_at_a_time_on_cpu(checkpoint):
    _, info = load_checkpoint(checkpoint)
    assert spine.auto_members_per_call(info.build(), torch.device("cpu")) == 1


def test_bad_members_per_call_is_refused(checkpoint):
    state, info = load_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="members_per_call"):
        model = info.build()
        spine.evaluate(model, iter([]), spine.open_member(model), test_inputs(), 7,
                       torch.device("cpu"), members_per_call=0)  # fmt: skip


def test_load_into_writes_the_members_weights_in_place(checkpoint):
    state, info = load_checkpoint(checkpoint)
    member = quantize(state, int_format(3), "bsr", seed=5)
    model = info.build()
    params_before = {n: p.data_ptr() for n, p in model.named_parameters()}
    member.load_into(model)
    for name, tensor in member.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert params_before == {n: p.data_ptr() for n, p in model.named_parameters()}  # no realloc


def test_load_into_refuses_a_member_of_another_architecture(checkpoint):
    state, _ = load_checkpoint(checkpoint)
    member = quantize(state, int_format(3), "bsr", seed=5)
    with pytest.raises(ValueError, match="does not match the model"):
        member.load_into(create_model("vit_mini_s", 10, (1, 1, 40)))


def test_bfloat16_predictions_are_the_bfloat16_forwards(tmp_path, checkpoint, data):
    # the bf16 file equals the model run under bf16 autocast, and is measurably not FP32's
    run_predict(checkpoint, data, tmp_path / "fp32.npz")
    run_predict(checkpoint, data, tmp_path / "bf16.npz", "--dtype", "bfloat16")
    state, info = load_checkpoint(checkpoint)
    model = info.build().eval()
    model.load_state_dict(state)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = torch.log_softmax(model(test_inputs()).float(), dim=-1)
    with np.load(tmp_path / "fp32.npz") as f, np.load(tmp_path / "bf16.npz") as g:
        bf16, fp32 = torch.from_numpy(g["log_probs"][0]), torch.from_numpy(f["log_probs"][0])
    torch.testing.assert_close(bf16, expected, atol=1e-6, rtol=1e-6)
    assert (bf16 - fp32).abs().max() > 1e-4  # bf16 keeps 8 bits of mantissa: FP32 differs ~1e-7
