"""A member, a manifest or a checkpoint that is not what it says is refused, naming the file."""

import json
import shutil

import numpy as np
import pytest
from helpers import run_generate, run_predict
from safetensors import safe_open
from safetensors.torch import save_file

from lpe.core.artifacts import ArtifactError, read_manifest, write_manifest
from lpe.models.checkpoints import checkpoint_info, save_checkpoint
from lpe.models.factory import create_model


@pytest.fixture
def members(tmp_path, checkpoint):
    folder = tmp_path / "members"
    run_generate(checkpoint, folder, "--method", "bsr", "--format", "int4", "--members", 2)
    return folder


def edit_metadata(path, **changes):
    """Rewrite a safetensors file with some metadata entries changed, tensors as they were."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    save_file(tensors, str(path), metadata={**meta, **changes})


def test_a_member_of_another_checkpoint_swapped_in_is_refused(tmp_path, checkpoint, data, members):
    other = tmp_path / "other.safetensors"
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=1)  # another training run
    info = {"model": "vit_mini_t", "num_classes": 10, "input_shape": [1, 1, 40],
            "backward_passes": 7}  # fmt: skip
    save_checkpoint(other, model, info)
    run_generate(other, tmp_path / "foreign", "--method", "bsr", "--format", "int4", "--members", 2)
    shutil.copy(tmp_path / "foreign/member01.safetensors", members / "member01.safetensors")
    with pytest.raises(ArtifactError, match=r"member01.safetensors was made from another checkp"):
        run_predict(checkpoint, data, tmp_path / "p.npz", "--members", members)
    assert not (tmp_path / "p.npz").exists()


def test_an_ensemble_file_of_another_checkpoint_swapped_in_is_refused(tmp_path, checkpoint, data):
    other = tmp_path / "other.safetensors"
    model = create_model("vit_mini_t", 10, (1, 1, 40), seed=1)  # another training run
    info = {"model": "vit_mini_t", "num_classes": 10, "input_shape": [1, 1, 40],
            "backward_passes": 7}  # fmt: skip
    save_checkpoint(other, model, info)
    ours, foreign = tmp_path / "ours", tmp_path / "foreign"
    for source, folder in ((checkpoint, ours), (other, foreign)):
        run_generate(source, folder, "--method", "bsr", "--format", "int4", "--members", 2,
                     "--layout", "shared-base")  # fmt: skip
    shutil.copy(foreign / "ensemble.safetensors", ours / "ensemble.safetensors")
    with pytest.raises(ArtifactError, match=r"ensemble.safetensors was made from another checkp"):
        run_predict(checkpoint, data, tmp_path / "p.npz", "--members", ours)
    edit_metadata(foreign / "ensemble.safetensors", seeds="[7, 8]")
    with pytest.raises(ArtifactError, match="its metadata does not match"):
        run_predict(other, data, tmp_path / "p.npz", "--members", foreign)
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize("key, value", [("bits", 6), ("method", "rtn"), ("member_bits", [1, 1])])
def test_an_edited_manifest_is_refused(tmp_path, checkpoint, data, members, key, value):
    path = members / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, key: value}, indent=2))
    with pytest.raises(ArtifactError, match="manifest.json does not match the checksum"):
        run_predict(checkpoint, data, tmp_path / "p.npz", "--members", members)


def test_a_relabelled_member_file_is_refused(tmp_path, checkpoint, data, members):
    edit_metadata(members / "member00.safetensors", bits="6", method="rtn")
    with pytest.raises(ArtifactError, match="member00.safetensors: its metadata does not match"):
        run_predict(checkpoint, data, tmp_path / "p.npz", "--members", members)


def test_a_member_whose_labels_disagree_with_its_manifest_is_refused(
    tmp_path, checkpoint, data, members
):
    # a consistent manifest (rewritten with its checksum) that says INT-6: the files say INT-4
    manifest = read_manifest(members)
    write_manifest(members, {**manifest, "format": "int6", "bits": 6})
    with pytest.raises(ArtifactError, match=r"is bsr INT-4 .*, but .* manifest says bsr int6"):
        run_predict(checkpoint, data, tmp_path / "p.npz", "--members", members)
    # and one whose code width disagrees with its own format
    write_manifest(members, {**manifest, "bits": 6})
    with pytest.raises(ArtifactError, match=r"manifest says bsr int4 \(6-bit codes\)"):
        run_predict(checkpoint, data, tmp_path / "p.npz", "--members", members)


@pytest.mark.parametrize("name", ["../member00.safetensors", "/etc/passwd", "sub/m.safetensors"])
def test_manifest_files_outside_the_folder_are_refused(members, name):
    manifest = read_manifest(members)
    write_manifest(members, {**manifest, "files": [name, *manifest["files"][1:]]})
    with pytest.raises(ArtifactError, match="lists files outside"):
        read_manifest(members)


def test_edited_checkpoint_metadata_is_refused(tmp_path, checkpoint, data):
    edit_metadata(checkpoint, backward_passes="1")  # the training budget that enters the scores
    with pytest.raises(ArtifactError, match="its metadata does not match the checksum"):
        checkpoint_info(checkpoint)
    with pytest.raises(ArtifactError, match="its metadata does not match the checksum"):
        run_predict(checkpoint, data, tmp_path / "p.npz")


def test_an_untouched_round_trip_is_accepted(tmp_path, checkpoint, data, members):
    run_predict(checkpoint, data, tmp_path / "p.npz", "--members", members)
    with np.load(tmp_path / "p.npz") as f:
        assert f["log_probs"].shape == (2, 30, 10) and int(f["bits"]) == 4
