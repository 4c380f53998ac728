import pytest

from lpe.core.artifacts import ArtifactError
from lpe.models.checkpoints import (
    GATE_RISE,
    GATE_TOLERANCE,
    checkpoint_info,
    convergence_gain,
    convergence_gate,
    load_checkpoint,
    rise_after_best,
    save_checkpoint,
    smoothed,
    validation_curve,
)
from lpe.models.factory import create_model


def test_checkpoint_round_trips(checkpoint):
    state, info = load_checkpoint(checkpoint)
    assert info.model == "vit_mini_t" and info.backward_passes == 7
    assert checkpoint_info(checkpoint) == info
    info.build().load_state_dict(state)


def test_truncated_checkpoint_names_the_file_and_what_to_do(checkpoint):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(ArtifactError) as err:
        load_checkpoint(checkpoint)
    assert str(checkpoint) in str(err.value) and "rerun the workflow" in str(err.value)


def test_corrupted_checkpoint_is_refused(checkpoint):
    raw = bytearray(checkpoint.read_bytes())
    raw[-5] ^= 0x10
    checkpoint.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        load_checkpoint(checkpoint)


def test_a_member_file_is_not_a_checkpoint(tmp_path, vit_state):
    from lpe.formats.number_formats import int_format
    from lpe.members.files import quantize, save_member

    path = tmp_path / "m.safetensors"
    save_member(path, quantize(vit_state, int_format(4), "rtn"), {})
    with pytest.raises(ArtifactError, match="not an LPE checkpoint"):
        checkpoint_info(path)


def test_the_gate_reads_a_centred_running_mean_of_three_epochs():
    assert smoothed([0.9, 0.6, 0.3, 0.3, 0.6]) == pytest.approx([0.75, 0.6, 0.4, 0.4, 0.45])
    assert smoothed([]) == []


@pytest.mark.parametrize(
    ("curve", "gain"),
    [
        # smoothed: .75, .633, .4, .3, .2, .15; 20% of 6 epochs: the last one
        ([1.0, 0.5, 0.4, 0.3, 0.2, 0.1], (0.2 - 0.15) / 0.2),
        # 2 of 10 epochs: the smoothed best before them is 0.5, at the end (0.5+0.497)/2
        ([0.5] * 9 + [0.497], (0.5 - 0.4985) / 0.5),
        ([0.3, 0.31], 0.0),  # worse at the end: no gain (the rise after the best is the other half)
        ([0.5, 0.4, 0.45, 0.42, 0.44], 0.0),  # the best so far, not the last epoch, is compared
    ],
)
def test_the_convergence_gain_is_the_best_nll_s_improvement_over_the_last_fifth(curve, gain):
    assert convergence_gain(curve) == pytest.approx(gain)


def test_a_curve_still_improving_by_a_few_percent_fails_the_plateau_and_a_flat_one_passes():
    # smoothed over its last fifth (2 of 10 epochs) from 0.3 to 0.2925: 2.5% (limit 1%)
    improving = [1.0, 0.5, 0.4, 0.35, 0.32, 0.31, 0.305, 0.30, 0.295, 0.29]
    assert convergence_gain(improving) == pytest.approx((0.3 - 0.2925) / 0.3)
    assert not convergence_gain(improving) < GATE_TOLERANCE
    flat = [1.0, 0.5, 0.4, 0.35, 0.32, 0.3, 0.3, 0.3, 0.3, 0.299]  # 0.2% < 1%
    assert convergence_gain(flat) < GATE_TOLERANCE
    assert GATE_TOLERANCE == 0.01 and GATE_RISE == 0.05  # the thresholds the reports print


def test_one_lucky_epoch_is_not_a_rise_after_the_best():
    # the raw curve dips 9% below its end at one epoch (a draw, not a trend): smoothed, the end
    # is 2.2% above the best, within the gate's 5%
    lucky = [1.0, 0.5, 0.3, 0.25, 0.22, 0.2, 0.22, 0.22, 0.218, 0.218]
    assert (lucky[-1] - min(lucky)) / min(lucky) == pytest.approx(0.09)
    assert rise_after_best(lucky) == pytest.approx((0.218 - 0.64 / 3) / (0.64 / 3))


def test_a_checkpoint_records_its_curve_and_the_gate_reads_it(tmp_path, vit_state):
    model = create_model("vit_mini_t", 10, (1, 1, 40))
    info = {"model": "vit_mini_t", "num_classes": 10, "input_shape": [1, 1, 40],
            "backward_passes": 1}  # fmt: skip
    still = tmp_path / "still.safetensors"
    save_checkpoint(still, model, {**info, "val_nll_curve": [1.0, 0.5, 0.4, 0.35, 0.3]})
    flat = tmp_path / "flat.safetensors"
    curve = [1.0, 0.5, 0.4, 0.301, 0.3, 0.3, 0.3]
    save_checkpoint(flat, model, {**info, "val_nll_curve": curve})
    assert validation_curve(flat) == curve
    # smoothed: ..., 0.35, 0.325 -> still improving by 7%
    assert convergence_gate(still) == (pytest.approx(0.025 / 0.35), 0.0, False)
    assert convergence_gate(flat)[2] is True  # smoothed 0.3 -> 0.3
    past = tmp_path / "past.safetensors"  # smoothed best 0.3, then 8% worse: past its best
    curve = [1.0, 0.5, 0.3, 0.3, 0.3, 0.31, 0.318, 0.33]
    save_checkpoint(past, model, {**info, "val_nll_curve": curve})
    assert convergence_gate(past) == (0.0, pytest.approx(0.08), False)
    near = tmp_path / "near.safetensors"  # smoothed 4% above the best: within the tolerance
    curve = [1.0, 0.5, 0.3, 0.3, 0.3, 0.31, 0.312, 0.312]
    save_checkpoint(near, model, {**info, "val_nll_curve": curve})
    assert convergence_gate(near)[2] is True
    pretrained = tmp_path / "pre.safetensors"
    save_checkpoint(pretrained, model, info)  # no curve: no gate to pass
    assert validation_curve(pretrained) == [] and convergence_gate(pretrained)[2] is False
