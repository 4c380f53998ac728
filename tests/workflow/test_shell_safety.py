"""Config strings that reach a shell command are data, never code (paper profile).

Each case runs Snakemake for real on the tiny paper config. The injection attempts would create a
file if a string reached the shell unquoted; a path with spaces must reach the stage whole.
"""

import subprocess

import pytest
import timm
import yaml
from helpers import ENV, ROOT, SNAKEMAKE

from lpe.stages.download_checkpoint import download

TINY_PAPER = ROOT / "tests/config/tiny_paper.yaml"
MODEL = yaml.safe_load(TINY_PAPER.read_text())["models"][0]


def run_paper(workdir, overrides: dict, *args):
    extra = workdir / "overrides.yaml"
    extra.write_text(yaml.safe_dump(overrides))
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(TINY_PAPER),
               str(extra), "--cores", "1", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir, env=ENV)


def stand_in(name, cache):
    return timm.create_model(name, pretrained=False, num_classes=3)


def injections(marker):
    return [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker};",
        f"' ; touch {marker} '",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(4))
def test_a_dataset_path_runs_no_command_and_reaches_the_stage_whole(tmp_path, case):
    marker = tmp_path / "pwned"
    folder = f"{tmp_path}/image net {injections(marker)[case]}"
    # the checkpoint is present (as if downloaded: random weights), so the prediction job runs
    checkpoint = tmp_path / f"work/tinypaper/checkpoints/{MODEL}.safetensors"
    download(MODEL, tmp_path / "cache", checkpoint, fetch=stand_in)
    result = run_paper(
        tmp_path, {"dataset": {"path": folder}}, f"work/tinypaper/preds/{MODEL}/fp32.npz"
    )
    assert result.returncode != 0  # the folder does not exist
    assert not marker.exists(), "a config string ran as a shell command"
    log = (tmp_path / f"work/tinypaper/logs/predict/{MODEL}/fp32.log").read_text()
    assert f"image folder {folder}/val does not exist" in log, log


@pytest.mark.slow
def test_an_openclip_name_that_is_not_a_name_stops_before_any_job(tmp_path):
    marker = tmp_path / "pwned"
    tower = "vit_base_patch32_clip_quickgelu_224.openai"
    evil = {"checkpoints": {"openclip": {tower: [f"ViT-B-32; touch {marker}", "openai"]}}}
    result = run_paper(tmp_path, {**evil, "dataset": {"path": str(tmp_path)}}, "-n")
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert f"'checkpoints.openclip.{tower}[0]'" in message, message
    assert "does not match" in message, message
    assert not marker.exists()
