"""Methods from outside the package, end to end: a posterior method (diagonal SWAG) and a
training-free baseline (uniform weight noise) in a package of their own, installed as a
distribution whose entry points (group ``lpe.methods``) add their registry lines. The tiny
workflow runs them through fine-tuning, the BMA draws, the baselines' choice, the scores,
Figures 2 and 8, Table 6 and claims 4, 6 and 10, with no file of this project touched."""

import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from helpers import ENV, ROOT, SNAKEMAKE

TINY = ROOT / "tests/config/tiny.yaml"
# the tests of one plugin run go to one pytest-xdist worker, so the run is made once
pytestmark = pytest.mark.xdist_group("plugin_run")

REGISTRY = '''
"""The registry lines (no torch: the workflow reads them while it builds the DAG)."""
from lpe.methods import FREE, Source

POSTERIOR = Source("swagdiag-bma", "SWAG-diagonal BMA", "posterior",
                   "draws from SWAG's diagonal Gaussian", "the SWAG-diagonal fine-tuning run",
                   module="lpe_extra.swagdiag", optimizer="swagdiag", solution="SWA mean")
BASELINE = Source("uniform-noise", "Uniform noise", "baseline",
                  "the checkpoint plus uniform noise of a scale chosen on validation", FREE,
                  module="lpe_extra.uniform_noise", candidates="baselines.gaussian_scales")
'''

POSTERIOR_METHOD = '''
"""SWAG's diagonal posterior: SWAG's run, draws without the low-rank part."""
from dataclasses import dataclass

import torch

from lpe.methods import Spec
from lpe.methods.swag import Swag, SwagPosterior
from lpe.training.finetuning import finetuning_method, posterior_type


@posterior_type
@dataclass
class DiagonalPosterior(SwagPosterior):
    kind = "swagdiag"

    def sample(self, generator, scale=0.5):
        z = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype)
        return self.mean + scale**0.5 * self.variance.sqrt() * z


@finetuning_method
class SwagDiagonal(Swag):
    name, what = "swagdiag", "SWAG-diagonal fine-tuning"

    def posterior(self, model):
        p = super().posterior(model)
        return DiagonalPosterior(p.mean, p.variance, p.deviations, p.snapshots)


SPEC = Spec("swagdiag-bma", finetuning=SwagDiagonal, posterior=DiagonalPosterior)
'''

BASELINE_METHOD = '''
"""Uniform weight noise of half-width ``scale x`` channel absmax on the quantized tensors."""
import contextlib

import torch

from lpe.evaluation.baselines import Baseline, channel_scales, fp32_bits
from lpe.formats.number_formats import int_format
from lpe.methods import Spec
from lpe.methods.gaussian_noise import scales_problem


@contextlib.contextmanager
def uniform_member(model, state, policy, setting, seed, *, device):
    generator = torch.Generator().manual_seed(seed)
    noisy = {}
    for name, tensor in state.items():
        if policy.quantizes(name, tensor):
            width = setting * channel_scales(int_format(2), tensor)
            tensor = tensor + width * (2 * torch.rand(tensor.shape, generator=generator) - 1)
        noisy[name] = tensor.to(device)
    yield noisy


SPEC = Spec("uniform-noise", baseline=Baseline(
    row="Uniform noise", setting="noise scale", chosen="noise scale {:g}",
    problem=scales_problem, member=uniform_member, storage=fp32_bits,
))
'''


def install(root):
    """The plugin package and its distribution's metadata in ``root`` (a ``PYTHONPATH`` entry,
    as ``pip install`` would leave them in site-packages)."""
    package = root / "lpe_extra"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(REGISTRY))
    (package / "swagdiag.py").write_text(textwrap.dedent(POSTERIOR_METHOD))
    (package / "uniform_noise.py").write_text(textwrap.dedent(BASELINE_METHOD))
    info = root / "lpe_extra-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lpe-extra\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[lpe.methods]\nswagdiag = lpe_extra:POSTERIOR\nuniform-noise = lpe_extra:BASELINE\n"
    )
    return {**ENV, "PYTHONPATH": str(root)}


def test_an_entry_point_adds_its_registry_lines_and_a_bad_one_is_refused(tmp_path):
    env = install(tmp_path / "site")
    code = (
        "from lpe import methods as m; "
        "print(m.bma_method('swagdiag'), m.finetuned_runs(), [s.name for s in m.table6()]); "
        "m.load_all(); from lpe.training.finetuning import FINETUNING; print(sorted(FINETUNING))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "swagdiag-bma ['sgd', 'swag', 'ivon', 'swagdiag'] "
        "['lpe-bsr', 'gaussian-noise', 'gaussian-matched', 'mc-dropout', 'uniform-noise']"
    )
    assert "swagdiag" in lines[1]
    points = tmp_path / "site/lpe_extra-0.1.dist-info/entry_points.txt"
    points.write_text("[lpe.methods]\nbroken = lpe_extra.swagdiag:SwagDiagonal\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "must name a Source" in done.stderr


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    env = install(root / "site")
    workdir = root / "run"
    workdir.mkdir()
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(TINY), "--cores", "2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir, env=env)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return workdir


def test_a_posterior_method_from_outside_runs_through_bma_figures_and_claims(plugin_run):
    results = plugin_run / "results/tiny"
    bma = pd.read_csv(results / "bma/scores.csv")
    ours = bma[bma["optimizer"] == "swagdiag"]
    assert set(ours["method"]) == {"fp32", "lpe-bsr", "swagdiag-bma"}  # the registry's names
    draws = ours[ours["method"] == "swagdiag-bma"]
    assert sorted(draws["members"].unique()) == [1, 2, 3] and draws["nll"].notna().all()
    swag = bma[(bma["optimizer"] == "swag") & (bma["method"] == "swag-bma")]
    assert not draws["nll"].reset_index(drop=True).equals(swag["nll"].reset_index(drop=True))
    for figure in ("fig2_nll_vs_ensemble_size_bma", "fig8_nll_vs_memory_bma"):
        assert (plugin_run / f"figures/tiny/{figure}.png").read_bytes()[:4] == b"\x89PNG"
    claims = (results / "claims.md").read_text()
    assert "SWAGDIAG, equal size" in claims and "SWAGDIAG, equal memory" in claims  # claim 4
    assert "SWAGDIAG BMA" in claims  # claim 10, at the shared base's memory


def test_a_baseline_from_outside_is_chosen_scored_and_tabled(plugin_run):
    results = plugin_run / "results/tiny"
    scores = pd.read_csv(results / "baselines/scores.csv")
    ours = scores[scores["method"] == "uniform-noise"]
    assert len(ours) and ours["nll"].notna().all()
    assert {"uniform-noise", "uniform-noise+ts"} <= set(
        pd.read_csv(results / "tables/table6.csv")["method"]
    )
    assert "| Uniform noise |" in (results / "tables/table6.md").read_text()  # its row's label
    assert "- part *Uniform noise*:" in (results / "claims.md").read_text()  # claim 6
