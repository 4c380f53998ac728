import json

import pytest
import torch

from lpe.core.artifacts import read_manifest
from lpe.formats.number_formats import int_format
from lpe.members.files import load_member, member_seed, quantize
from lpe.stages.generate import main


def run(checkpoint, out, *extra):
    main(["--checkpoint", str(checkpoint), "--out", str(out), *map(str, extra)])


def test_bsr_members_are_reproducible_from_checkpoint_format_and_seed(
    tmp_path, checkpoint, vit_state
):
    args = ("--method", "bsr", "--format", "int4", "--seed", 3, "--members", 3)
    for folder in ("a", "b"):
        run(checkpoint, tmp_path / folder, *args)
    manifest = read_manifest(tmp_path / "a")
    assert manifest["member_seeds"] == [member_seed(3, k) for k in range(3)]
    assert manifest["quantized_params"] + manifest["kept_params"] == sum(
        t.numel() for t in vit_state.values()
    )
    for name in manifest["files"]:
        a, _ = load_member(tmp_path / "a" / name)
        b, _ = load_member(tmp_path / "b" / name)
        assert all(torch.equal(a.codes[n], b.codes[n]) for n in a.codes)
    # and equal to quantizing the state in memory with the recorded member seed
    first, meta = load_member(tmp_path / "a" / manifest["files"][0])
    again = quantize(vit_state, int_format(4), "bsr", seed=manifest["member_seeds"][0])
    assert all(torch.equal(first.codes[n], again.codes[n]) for n in again.codes)
    assert meta["checkpoint_sha256"] == manifest["checkpoint_sha256"]


def test_members_of_one_ensemble_differ(tmp_path, checkpoint):
    run(checkpoint, tmp_path / "m", "--method", "bsr", "--format", "int4", "--members", 2)
    files = read_manifest(tmp_path / "m")["files"]
    a, _ = load_member(tmp_path / "m" / files[0])
    b, _ = load_member(tmp_path / "m" / files[1])
    assert any(not torch.equal(a.codes[n], b.codes[n]) for n in a.codes)


def test_rtn_takes_one_member(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="--members 1"):
        run(checkpoint, tmp_path / "r", "--method", "rtn", "--format", "int4", "--members", 3)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["int1", "int17"])
def test_bits_outside_range_are_refused_before_work(tmp_path, checkpoint, name, capsys):
    with pytest.raises(SystemExit):
        run(checkpoint, tmp_path / "x", "--method", "bsr", "--format", name)
    assert "unknown number format" in capsys.readouterr().err


def test_a_failed_generation_leaves_no_folder(tmp_path, checkpoint):
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    with pytest.raises(Exception, match="truncated or corrupted"):
        run(checkpoint, tmp_path / "m", "--method", "bsr", "--format", "int4")
    assert not (tmp_path / "m").exists()
    assert not list(tmp_path.glob(".m.tmp-*"))


def test_manifest_is_json_with_per_member_bits(tmp_path, checkpoint):
    run(checkpoint, tmp_path / "m", "--method", "bsr", "--format", "int5", "--members", 2)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    sizes = [(tmp_path / "m" / f).stat().st_size for f in manifest["files"]]
    assert all(b // 8 < s for b, s in zip(manifest["member_bits"], sizes, strict=True))
