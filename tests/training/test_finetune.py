import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import TRAINING

from lpe.data.datasets import build, save_splits
from lpe.methods.ivon import IvonPosterior, IvonSettings
from lpe.methods.swag import SwagError, SwagPosterior, SwagSettings
from lpe.models.checkpoints import checkpoint_info, load_checkpoint
from lpe.stages.finetune import main as finetune
from lpe.training.finetuning import FinetuneConfig, load_posterior
from lpe.training.loop import DivergenceError

SIZES = TRAINING


def run(checkpoint, data, out, *args):
    common = ["--device", "cpu", "--epochs", "2", "--batch-size", "16"]
    finetune(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
              *common, *map(str, args)])  # fmt: skip


@pytest.mark.parametrize("optimizer", ["sgd", "swag", "ivon"])
def test_each_run_saves_its_solution_and_counts_backward_passes(tmp_path, checkpoint, data,
                                                                 optimizer):  # fmt: skip
    out, post = tmp_path / "sol.safetensors", tmp_path / "post.safetensors"
    args = ["--optimizer", optimizer, "--swag-rank", 3, "--swag-collect-every", 1]
    if optimizer != "sgd":
        args += ["--posterior", post]
    run(checkpoint, data, out, *args)
    info = checkpoint_info(out)
    assert info.optimizer == optimizer and info.model == "vit_mini_t"
    assert info.backward_passes == 7 + 2 * 4  # the fixture's 7 plus 2 epochs x 4 steps
    state, _ = load_checkpoint(out)
    start, _ = load_checkpoint(checkpoint)
    assert not torch.equal(state["blocks.0.mlp.fc1.weight"], start["blocks.0.mlp.fc1.weight"])
    if optimizer == "sgd":
        assert not post.exists()
        return
    posterior, meta = load_posterior(post)
    assert meta["solution_sha256"] == info.sha256
    model = info.build()
    model.load_state_dict(state)
    solution = torch.nn.utils.parameters_to_vector(model.parameters())
    torch.testing.assert_close(posterior.mean, solution)  # the solution is the posterior mean
    if optimizer == "swag":
        assert isinstance(posterior, SwagPosterior) and posterior.snapshots == 4  # epoch 2
        assert posterior.rank == 3
    else:
        assert isinstance(posterior, IvonPosterior) and posterior.ess == 12000.0


def test_the_same_seed_gives_the_same_ivon_run(tmp_path, checkpoint, data):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for out in (a, b):
        run(checkpoint, data, out, "--optimizer", "ivon", "--posterior", f"{out}.post")
    assert load_posterior(f"{a}.post")[0].hess.equal(load_posterior(f"{b}.post")[0].hess)
    assert checkpoint_info(a).sha256 == checkpoint_info(b).sha256


def test_a_swag_rank_above_the_snapshots_stops_before_training(tmp_path, checkpoint, data):
    with pytest.raises(SwagError, match=r"swag.rank = 20 is larger than the 4 snapshots"):
        run(checkpoint, data, tmp_path / "s.safetensors", "--optimizer", "swag",
            "--posterior", tmp_path / "p.safetensors", "--swag-collect-every", 1)  # fmt: skip
    assert not (tmp_path / "s.safetensors").exists()


def test_divergence_stops_the_run_naming_the_setting(tmp_path, checkpoint, data):
    with pytest.raises(DivergenceError, match=r"lower bma.sgd.lr \(now 1e\+30\)"):
        run(checkpoint, data, tmp_path / "s.safetensors", "--optimizer", "sgd", "--lr", 1e30)
    assert not (tmp_path / "s.safetensors").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"optimizer": "ivon", "ivon_ess": 0.0}, "ivon_ess (effective sample size) must be > 0"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"optimizer": "swag", "swag_start_epoch": 3}, "swag_start_epoch must be in [0, epochs"),
        ({"optimizer": "swag", "swag_rank": 1}, "swag_rank must be >= 2"),
        ({"optimizer": "csgld", "csgld_exploration": 1.5}, "csgld exploration must be in [0, 1]"),
        ({"optimizer": "sse", "cycles": 0}, "cycles must be >= 1"),
        ({"lr": -1.0}, "learning rates must be > 0"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"swag_rnak": 2}, "unknown ['swag_rnak']"),
    ],
)
def test_bad_settings_are_named(settings, message):
    """Each method checks its own settings, and the run's method is built (fresh) from them."""
    with pytest.raises(ValueError, match="bad fine-tuning settings") as info:
        FinetuneConfig.of(**settings).method()
    assert message in str(info.value)


def test_a_method_reads_only_its_own_settings():
    cfg = FinetuneConfig.of("ivon", lr=0.5, ivon_lr=0.01, swag_rank=3)
    assert cfg.settings == IvonSettings(ivon_lr=0.01)
    assert FinetuneConfig.of("swag", lr=0.5, swag_rank=3).settings == SwagSettings(
        lr=0.5, swag_rank=3
    )


def _finetune_process(checkpoint, data, out, *args):
    command = [sys.executable, "-m", "lpe.stages.finetune", "--checkpoint", str(checkpoint),
               "--data", str(data), "--out", str(out), "--device", "cpu", "--epochs", "2",
               "--batch-size", "16", *map(str, args)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "swag", "ivon", "csgld"])
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, checkpoint,
                                                                     optimizer):  # fmt: skip
    """SIGKILL once the first resumable state is saved, rerun: the weights (and posterior) of an
    uninterrupted run. Each run is a fresh process, as a job is."""
    data = tmp_path / "big.npz"  # 63 steps per epoch: the kill lands mid-run
    save_splits(data, build("mnist1d", train=1000, val=16, test=16, seed=0))
    args = ["--optimizer", optimizer, "--swag-rank", 3, "--swag-collect-every", 10,
            "--cycles", 2, "--lr", 0.01]  # fmt: skip
    if optimizer in ("swag", "ivon"):
        args += ["--posterior", tmp_path / "post.safetensors"]
    clean = _finetune_process(checkpoint, data, tmp_path / "clean.safetensors", *args)
    assert clean.wait() == 0, clean.stderr.read().decode()
    clean_post = load_posterior(tmp_path / "post.safetensors")[0] if optimizer in (
        "swag", "ivon") else None  # fmt: skip
    resume = ["--resume", tmp_path / "resume.pt", "--checkpoint-every", 20]
    out = tmp_path / "sol.safetensors"
    child = _finetune_process(checkpoint, data, out, *args, *resume)
    deadline = time.monotonic() + 120
    while not (tmp_path / "resume.pt").exists() and child.poll() is None:
        assert time.monotonic() < deadline, "no resumable state was saved"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not out.exists(), "the run ended before the kill: nothing was resumed"
    rerun = _finetune_process(checkpoint, data, out, *args, *resume)
    assert rerun.wait() == 0, rerun.stderr.read().decode()
    want, _ = load_checkpoint(tmp_path / "clean.safetensors")
    got, _ = load_checkpoint(out)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name
    if clean_post is not None:
        resumed_post = load_posterior(tmp_path / "post.safetensors")[0].tensors()
        for name, tensor in clean_post.tensors().items():
            assert torch.equal(resumed_post[name], tensor), name
    assert checkpoint_info(out).backward_passes == checkpoint_info(
        tmp_path / "clean.safetensors").backward_passes  # fmt: skip
    assert not (tmp_path / "resume.pt").exists()  # removed once the outputs are written


def test_a_resumable_state_of_other_settings_is_refused(tmp_path, checkpoint, data):
    from lpe.core.resume import ResumeError

    resume = ["--resume", tmp_path / "resume.pt", "--checkpoint-every", 2]
    run(checkpoint, data, tmp_path / "a.safetensors", "--lr", 0.001, *resume)
    assert not (tmp_path / "resume.pt").exists()  # a finished run leaves none
    torch.save({"fingerprint": {"other": 1}, "state": {"step": 2}}, tmp_path / "resume.pt")
    with pytest.raises(ResumeError, match="saved by a run with other settings"):
        run(checkpoint, data, tmp_path / "a.safetensors", "--lr", 0.002, *resume)
