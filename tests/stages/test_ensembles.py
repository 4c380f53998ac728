"""lpe.stages.ensembles: one job per model x precision gives what generate + predict give."""

import json

import numpy as np
import pytest
from safetensors import safe_open

import lpe.stages.ensembles
import lpe.stages.predict
from lpe.members.sets import folder_members
from lpe.models.checkpoints import checkpoint_info
from lpe.stages.generate import main as generate


def _separately(tmp_path, checkpoint, data, method, seed, members):
    folder, out = tmp_path / f"sep-{method}{seed}", tmp_path / f"sep-{method}{seed}.npz"
    generate(["--checkpoint", str(checkpoint), "--method", method, "--format", "int4",
              "--seed", str(seed), "--members", str(members), "--out", str(folder)])  # fmt: skip
    lpe.stages.predict.main(["--checkpoint", str(checkpoint), "--data", str(data),
                      "--members", str(folder), "--batch-size", "7", "--device", "cpu",
                      "--out", str(out)])  # fmt: skip
    return folder, out


@pytest.mark.parametrize("layout", ["files", "shared-base"])
def test_one_job_equals_generate_then_predict_for_every_run(tmp_path, checkpoint, data, layout):
    """The same members and predictions in either layout; a shared-base file's predictions also
    carry the shared-base bits, which sum to the file's and are below the member files'."""
    ours = {s: (tmp_path / f"bsr{s}", tmp_path / f"bsr{s}.npz") for s in (0, 2)}
    lpe.stages.ensembles.main([
        "--checkpoint", str(checkpoint), "--data", str(data), "--format", "int4", "--members", "3",
        "--seeds", "0", "2", "--members-out", *(str(m) for m, _ in ours.values()),
        "--out", *(str(p) for _, p in ours.values()), "--rtn-members-out", str(tmp_path / "rtn"),
        "--rtn-out", str(tmp_path / "rtn.npz"), "--batch-size", "7", "--device", "cpu",
        "--layout", layout,
    ])  # fmt: skip
    expected = {("bsr", s): _separately(tmp_path, checkpoint, data, "bsr", s, 3) for s in (0, 2)}
    expected["rtn", 0] = _separately(tmp_path, checkpoint, data, "rtn", 0, 1)
    ours = {("bsr", s): v for s, v in ours.items()} | {
        ("rtn", 0): (tmp_path / "rtn", tmp_path / "rtn.npz")
    }
    stored = {"files", "ensemble", "member_shared_bits", "manifest_sha256"}  # the layout's own
    for run, (folder, preds) in ours.items():
        sep_folder, sep_preds = expected[run]
        manifest = json.loads((folder / "manifest.json").read_text())
        separate = json.loads((sep_folder / "manifest.json").read_text())
        assert {k: v for k, v in manifest.items() if k not in stored} == {
            k: v for k, v in separate.items() if k not in stored
        }
        for name in manifest.get("files", []):  # same tensors and metadata (order not fixed)
            with safe_open(folder / name, "pt") as a, safe_open(sep_folder / name, "pt") as b:
                assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
                for key in a.keys():
                    assert a.get_tensor(key).equal(b.get_tensor(key)), (run, name, key)
        sha = checkpoint_info(checkpoint).sha256
        pairs = zip(folder_members(folder, checkpoint, sha)[1],
                    folder_members(sep_folder, checkpoint, sha)[1], strict=True)  # fmt: skip
        for a, b in pairs:  # either layout reads back the same members
            assert (a.method, a.seed, a.fmt.name) == (b.method, b.seed, b.fmt.name)
            for part in ("codes", "scales", "kept"):
                assert all(t.equal(getattr(b, part)[n]) for n, t in getattr(a, part).items())
        with np.load(preds) as a, np.load(sep_preds) as b:
            assert set(a.files) - set(b.files) == ({"member_shared_bits"} if layout ==
                                                   "shared-base" else set())  # fmt: skip
            for key in set(b.files) - {"member_seconds"}:  # a measured time: never the same
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{run} {key}")
            # the run's registry name, as the score CSVs hold it: no renaming on the way
            assert str(a["method"]) == {"bsr": "lpe-bsr", "rtn": "rtn"}[run[0]]
            if layout == "shared-base":
                shared = a["member_shared_bits"]
                assert shared.sum() == json.loads(
                    safe_open(folder / "ensemble.safetensors", "pt").metadata()["memory_bits"]
                )
                if len(shared) == 1:  # one member: its codes are the base, no plane
                    assert shared[0] == a["member_bits"][0]
                else:  # each further member is one plane; together below the member files
                    assert (shared[1:] == shared[1]).all() and shared[1] < shared[0]
                    assert shared.sum() < a["member_bits"].sum()
    with np.load(tmp_path / "bsr0.npz") as a, np.load(tmp_path / "bsr2.npz") as b:
        assert not np.array_equal(a["log_probs"], b["log_probs"])  # the seeds differ


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0", "1", "--members-out", "a", "--out", "a.npz"], "must pair up"),
        (["--seeds", "1", "1", "--members-out", "a", "b", "--out", "a.npz", "b.npz"], "distinct"),
        (["--rtn-out", "r.npz"], "go together"),
        ([], "nothing to do"),
    ],
)
def test_bad_run_lists_are_refused_before_any_work(capsys, args, message):
    with pytest.raises(SystemExit):
        lpe.stages.ensembles.main(["--checkpoint", "c", "--data", "d", "--format", "int4", *args])
    assert message in capsys.readouterr().err
