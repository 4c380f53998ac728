"""The fast-ensemble stage: sources, budgets, LPE-BSR copies, and the Figure 4 plane."""

import json

import numpy as np
import pytest
import torch
from helpers import FAST_COMMON, FAST_RUN, PRETRAIN, TRAINING, budgets
from helpers import train_fast as train

from lpe.core.artifacts import ArtifactError, write_manifest
from lpe.methods.batchensemble import batch_ensemble_bits, load_batch_ensemble
from lpe.models.checkpoints import checkpoint_info, load_checkpoint
from lpe.stages.fast_predict import main as fast_predict
from lpe.stages.finetune import main as finetune
from lpe.stages.landscape import main as landscape
from lpe.stages.score import score_files
from lpe.training.loop import DivergenceError

SIZES = TRAINING
RUN = FAST_RUN  # one run: 2 epochs x 4 steps
COMMON = FAST_COMMON


def predict(sources, data, out, *args):
    fast_predict(["--sources", str(sources), "--data", str(data), "--out", str(out),
          "--device", "cpu", *map(str, args)])  # fmt: skip
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def weights(path):
    return load_checkpoint(path)[0]["blocks.0.mlp.fc1.weight"]


@pytest.mark.parametrize("method", ["sse", "csgld", "de"])
def test_each_source_costs_one_run_and_a_de_of_k_runs_costs_k_runs(tmp_path, checkpoint, data,
                                                                   method):  # fmt: skip
    manifest = train(checkpoint, data, tmp_path / method, method, "--runs", 3, "--lr", 0.01)
    assert budgets(manifest) == [RUN, 2 * RUN, 3 * RUN]  # source c exists after c runs or cycles
    first, last = (tmp_path / method / s["file"] for s in manifest["sources"][::2])
    assert checkpoint_info(last).backward_passes == PRETRAIN + 3 * RUN
    assert not torch.equal(weights(first), weights(last))


def test_multiivon_draws_share_their_run_budget(tmp_path, checkpoint, data):
    manifest = train(checkpoint, data, tmp_path / "m", "multiivon", "--runs", 2, "--draws", 3)
    assert budgets(manifest) == [RUN] * 3 + [2 * RUN] * 3
    draws = [weights(tmp_path / "m" / s["file"]) for s in manifest["sources"]]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[3])


def test_de_reuses_an_identical_run_zero_and_refuses_another(tmp_path, checkpoint, data):
    sgd = tmp_path / "sgd.safetensors"
    finetune(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(sgd), *COMMON])
    made = train(checkpoint, data, tmp_path / "made", "de", "--runs", 2)
    reused = train(checkpoint, data, tmp_path / "reused", "de", "--runs", 2, "--reuse", sgd)
    assert budgets(made) == budgets(reused) == [RUN, 2 * RUN]
    # the same runs, up to the first training run in a process, which can differ from a later
    # identical one by ~1e-10 (one float32 ulp; see the CSGLD test below): made's run 0 and the
    # reused SGD run are such a pair whenever this test is the first to train in its worker;
    # another run (another seed, rate or start) differs by far more
    for a, b in zip(made["sources"], reused["sources"], strict=True):
        made_w, reused_w = (
            weights(tmp_path / d / s["file"]) for d, s in (("made", a), ("reused", b))
        )
        torch.testing.assert_close(made_w, reused_w, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="is not run 0 of this method.*'lr'"):
        train(checkpoint, data, tmp_path / "x", "de", "--runs", 2, "--reuse", sgd, "--lr", 0.5)
    assert not (tmp_path / "x").exists()  # nothing written


def test_csgld_adds_noise_only_in_the_sampling_phase(tmp_path, checkpoint, data):
    common = ["--runs", 2, "--lr", 0.01, "--momentum", 0.0, "--csgld-temperature", 5.0]
    sse = train(checkpoint, data, tmp_path / "sse", "sse", *common)
    never = train(checkpoint, data, tmp_path / "never", "csgld", *common,
                  "--csgld-exploration", 1.0)  # fmt: skip
    half = train(checkpoint, data, tmp_path / "half", "csgld", *common,
                 "--csgld-exploration", 0.5)  # fmt: skip
    # The first training run in a process can differ from a later identical one by ~1e-9 (seen
    # when this test runs alone: sse, then sse again, differ as sse and "never" do), so equality
    # is up to 1e-6; the Langevin noise at temperature 5 moves weights by far more.
    for a, b, c in zip(sse["sources"], never["sources"], half["sources"], strict=True):
        plain = weights(tmp_path / "sse" / a["file"])
        never_moved = weights(tmp_path / "never" / b["file"]) - plain
        half_moved = weights(tmp_path / "half" / c["file"]) - plain
        assert never_moved.abs().max() < 1e-6  # no sampling phase
        assert half_moved.abs().max() > 1e-3


def test_cycles_that_do_not_divide_the_run_stop_before_training(tmp_path, checkpoint, data):
    out = tmp_path / "sol.safetensors"
    with pytest.raises(ValueError, match="3 cycles do not divide the training length of 8"):
        finetune(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                  *COMMON, "--optimizer", "sse", "--cycles", "3"])  # fmt: skip
    assert not out.exists()


def test_batch_ensemble_counts_every_members_passes_and_bits(tmp_path, checkpoint, data):
    manifest = train(checkpoint, data, tmp_path / "be", "batchensemble", "--runs", 3)
    assert budgets(manifest) == [3 * RUN] and manifest["sources"][0]["members"] == 3
    model, members, _ = load_batch_ensemble(tmp_path / "be" / "source00.safetensors")
    bits = batch_ensemble_bits(model, members)
    total = 32 * sum(t.numel() for t in model.state_dict().values())
    assert sum(bits) == total and bits[1] == bits[2] < bits[0]
    preds = predict(tmp_path / "be", data, tmp_path / "be.npz")
    assert preds["log_probs"].shape == (3, 16, 10)
    assert not np.allclose(preds["log_probs"][0], preds["log_probs"][1])  # members differ
    with pytest.raises(ValueError, match="BatchEnsemble"):
        predict(tmp_path / "be", data, tmp_path / "x.npz", "--format", "int4", "--members-out",
                tmp_path / "m")  # fmt: skip


def test_lpe_copies_add_members_and_memory_but_no_training_budget(tmp_path, checkpoint, data):
    train(checkpoint, data, tmp_path / "sse", "sse", "--runs", 2)
    alone = predict(tmp_path / "sse", data, tmp_path / "fp32.npz")
    copies = predict(tmp_path / "sse", data, tmp_path / "bsr.npz", "--format", "int4",
                     "--copies", 3, "--seed", 1, "--members-out", tmp_path / "members")  # fmt: skip
    assert alone["log_probs"].shape[0] == 2 and copies["log_probs"].shape[0] == 6
    assert list(alone["budget"] - PRETRAIN) == [RUN, 2 * RUN]
    assert list(copies["budget"] - PRETRAIN) == [RUN] * 3 + [2 * RUN] * 3
    assert sorted(p.name for p in (tmp_path / "members").iterdir()) == ["source00", "source01"]
    assert copies["member_bits"][0] < alone["member_bits"][0] / 4  # INT-4 vs FP32
    scores = score_files([tmp_path / "fp32.npz", tmp_path / "bsr.npz"])
    assert set(scores["method"]) == {"sse", "sse+lpe-bsr"}
    at = scores.set_index(["method", "members"])["backward_passes"] - PRETRAIN
    assert at["sse", 1] == at["sse+lpe-bsr", 3] == RUN  # equal budget, k copies per source
    assert at["sse", 2] == at["sse+lpe-bsr", 6] == 2 * RUN


def test_the_figure4_plane_holds_two_snapshots_and_a_draw_of_one(tmp_path, checkpoint, data):
    train(checkpoint, data, tmp_path / "sse", "sse", "--runs", 2, "--lr", 0.01)
    predict(tmp_path / "sse", data, tmp_path / "bsr.npz", "--format", "int4", "--copies", 1,
            "--members-out", tmp_path / "members")  # fmt: skip
    member = tmp_path / "members" / "source00"  # a members folder: its first member
    args = ["--checkpoint", str(tmp_path / "sse" / "source00.safetensors"),
            "--second", str(tmp_path / "sse" / "source01.safetensors"), "--data", str(data),
            "--grid", "3", "--points", "8", "--device", "cpu"]  # fmt: skip
    landscape([*args, "--member", str(member), "--out", str(tmp_path / "p.npz")])
    with np.load(tmp_path / "p.npz") as plane:
        assert list(plane["anchor_names"]) == ["snapshot 1", "snapshot 2", "LPE-BSR draw"]
        assert plane["anchors"][0].tolist() == [0.0, 0.0] and plane["anchors"][1][0] > 0
    other = tmp_path / "members" / "source01"
    with pytest.raises(ArtifactError, match="made from another checkpoint"):  # of snapshot 2
        landscape([*args, "--member", str(other), "--out", str(tmp_path / "q.npz")])
    assert not (tmp_path / "q.npz").exists()


def test_an_incomplete_sources_folder_is_refused(tmp_path, data):
    (tmp_path / "s").mkdir()
    with pytest.raises(Exception, match="no manifest.json"):
        predict(tmp_path / "s", data, tmp_path / "x.npz")
    (tmp_path / "s" / "manifest.json").write_text(json.dumps({"method": "nope"}))
    with pytest.raises(ArtifactError, match="does not match the checksum"):
        predict(tmp_path / "s", data, tmp_path / "x.npz")
    write_manifest(tmp_path / "s", {"method": "nope"})
    with pytest.raises(ArtifactError, match="not a sources manifest"):
        predict(tmp_path / "s", data, tmp_path / "x.npz")


def test_a_diverging_run_stops_with_a_message_and_writes_nothing(tmp_path, checkpoint, data):
    with pytest.raises(DivergenceError, match=r"lower fast.sse.lr \(now 1e\+30\)"):
        train(checkpoint, data, tmp_path / "sse", "sse", "--runs", 2, "--lr", 1e30)
    assert not (tmp_path / "sse").exists()
    assert not list(tmp_path.glob(".sse.tmp-*"))  # no half-written sources left behind


def test_sse_peak_rate_is_chosen_on_validation_by_the_first_snapshot(tmp_path, checkpoint, data):
    manifest = train(checkpoint, data, tmp_path / "sse", "sse", "--runs", 2,
                     "--lr-candidates", 0.3, 0.001)  # fmt: skip
    choice = manifest["settings"]["lr_choice"]
    assert set(choice["validation_nll"]) == {"0.001", "0.3"}
    best = min(choice["validation_nll"], key=choice["validation_nll"].get)
    assert choice["chosen"] == float(best) == manifest["settings"]["lr"]
    assert choice["start_validation_nll"] > 0
    # the probes are not the method's training: the budget is still 2 cycles
    assert budgets(manifest) == [RUN, 2 * RUN]
    # the chosen rate's run is the run --lr would make, up to the order of float sums: the first
    # run in a process (here the probes' and the chosen run's) can differ from later ones in the
    # last bits (measured 6e-11 on the first snapshot), a later run's sources equal each other
    direct = train(checkpoint, data, tmp_path / "direct", "sse", "--runs", 2, "--lr", best)
    other = train(checkpoint, data, tmp_path / "other", "sse", "--runs", 2, "--lr", 0.3)
    for ours, theirs, far in zip(manifest["sources"], direct["sources"], other["sources"],
                                 strict=True):  # fmt: skip
        chosen, same = (
            weights(tmp_path / "sse" / ours["file"]),
            tmp_path / "direct" / theirs["file"],
        )
        torch.testing.assert_close(chosen, weights(same), rtol=1e-5, atol=1e-8)
        assert not torch.allclose(chosen, weights(tmp_path / "other" / far["file"]), atol=1e-4)
    with pytest.raises(SystemExit):  # --lr-candidates is sse's and csgld's flag, not de's
        train(checkpoint, data, tmp_path / "de", "de", "--lr-candidates", 0.1, 0.2)
    with pytest.raises(SystemExit):
        train(checkpoint, data, tmp_path / "neg", "sse", "--lr-candidates", 0.1, -0.2)
