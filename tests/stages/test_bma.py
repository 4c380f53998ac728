import subprocess
import sys

import numpy as np
import pytest
import torch

from lpe.data.datasets import build
from lpe.evaluation.spine import predict_log_probs
from lpe.members.files import member_seed
from lpe.methods.ivon import IvonPosterior
from lpe.methods.swag import SwagPosterior
from lpe.models.factory import create_model
from lpe.stages.bma import predict_draws
from lpe.training.finetuning import draw


def test_member_k_does_not_depend_on_the_ensemble_or_other_seeds():
    post = IvonPosterior(torch.zeros(10), torch.ones(10), ess=100, weight_decay=0.0)
    assert torch.equal(draw(post, seed=0, index=3), draw(post, seed=0, index=3))
    assert not torch.equal(draw(post, seed=0, index=3), draw(post, seed=1, index=3))
    assert not torch.equal(draw(post, seed=0, index=3), draw(post, seed=0, index=4))


def test_swag_scale_reaches_the_draw():
    post = SwagPosterior(torch.zeros(200), torch.ones(200), torch.zeros(3, 200), snapshots=3)
    wide, narrow = draw(post, 0, 0, swag_scale=1.0), draw(post, 0, 0, swag_scale=0.25)
    torch.testing.assert_close(narrow, wide / 2)


def test_a_draw_stays_fp32_when_the_forwards_run_in_bfloat16():
    g = torch.Generator().manual_seed(0)
    post = SwagPosterior(torch.randn(300, generator=g), torch.rand(300, generator=g),
                         torch.randn(4, 300, generator=g), snapshots=4)  # fmt: skip
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = draw(post, 0, 0)
        unprotected = post.sample(torch.Generator().manual_seed(member_seed(0, 0)))
    assert reduced.dtype == torch.float32 and torch.equal(reduced, draw(post, 0, 0))
    assert not torch.equal(unprotected, reduced)  # what the guard prevents


def test_each_draw_is_written_into_the_one_model_and_evaluated():
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=0)
    mean = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    post = IvonPosterior(mean, torch.full_like(mean, 100.0), ess=100, weight_decay=0.0)
    x = build("mnist1d", train=10, val=10, test=20, seed=0).x["test"]
    cpu = torch.device("cpu")
    log_probs = predict_draws(model, post, 3, 7, x, batch_size=8, device=cpu)
    assert log_probs.shape == (3, 20, 10)
    for k in range(3):
        other = create_model("vit_mini_t", 10, (1, 1, 40), seed=5)
        torch.nn.utils.vector_to_parameters(draw(post, 7, k), other.parameters())
        expected = predict_log_probs(other, x, 8, cpu)
        np.testing.assert_allclose(log_probs[k], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(log_probs[0], log_probs[1])


def test_a_posterior_of_another_solution_is_refused(tmp_path, checkpoint):
    from lpe.stages.bma import main
    from lpe.training.finetuning import save_posterior

    posterior = tmp_path / "p.safetensors"
    save_posterior(posterior, IvonPosterior(torch.zeros(3), torch.ones(3), 10, 0.0), "0" * 64)
    with pytest.raises(ValueError, match="belongs to another solution"):
        main(["--checkpoint", str(checkpoint), "--posterior", str(posterior), "--data", "d",
              "--members", "2", "--seeds", "0", "--out", str(tmp_path / "o.npz")])  # fmt: skip
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("stage", ["bma", "landscape"])
def test_a_stage_reading_a_posterior_registers_its_type_itself(tmp_path, checkpoint, stage):
    """Run as the workflow runs it (a fresh process, nothing else imported), the stage knows the
    posterior's type: it gets as far as the solution check, not "a type no loaded method
    registers"."""
    from lpe.training.finetuning import save_posterior

    posterior = tmp_path / "p.safetensors"
    save_posterior(posterior, IvonPosterior(torch.zeros(3), torch.ones(3), 10, 0.0), "0" * 64)
    own = {"bma": ["--seeds", "0"], "landscape": ["--member", "m"]}[stage]
    run = subprocess.run(
        [sys.executable, "-m", f"lpe.stages.{stage}", "--checkpoint", str(checkpoint),
         "--posterior", str(posterior), "--data", "d.npz", *own, "--out", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "belongs to another solution" in run.stderr, run.stderr[-2000:]
