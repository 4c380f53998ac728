"""The numerics fingerprint: deterministic, covering the mini models, and naming what differs."""

import os
import subprocess
import sys

import pytest

from lpe.core import numerics
from lpe.tools import fingerprint


@pytest.fixture(scope="module")
def mine():
    return fingerprint.fingerprint()


def test_the_fingerprint_is_deterministic_and_covers_every_mini_model(mine):
    assert fingerprint.fingerprint() == mine
    rows = fingerprint.parse(mine)
    for model in fingerprint.MINI:
        assert f"{model} 3 AdamW steps" in rows
        assert any(n.startswith(f"{model} linear") and n.endswith("weight grad") for n in rows)
    assert {"conv2d patch 1x4 forward", "softmax", "layer_norm", "gelu"} <= set(rows)
    # a training step's parts, one by one: which one differs when the AdamW steps do
    assert {"softmax backward", "AdamW update on fixed gradients (3 steps)"} <= set(rows)
    assert any(n.startswith("vit_mini_l attention") and n.endswith("q grad") for n in rows)
    assert all(len(h) == 12 for h in rows.values())
    assert "# env: ATEN_CPU_CAPABILITY=" in mine


def test_the_check_names_the_first_computation_that_differs(mine, tmp_path, capsys):
    reference = tmp_path / "ref.txt"
    reference.write_text(mine)
    assert fingerprint.main(["--check", str(reference)]) == 0
    total = len(fingerprint.parse(mine))
    assert f"all {total} computations equal" in capsys.readouterr().out
    planted = mine.replace(
        fingerprint.parse(mine)["softmax"] + "  softmax", "000000000000  softmax"
    )
    reference.write_text(planted)
    assert fingerprint.main(["--check", str(reference)]) == 1
    err = capsys.readouterr().err
    assert f"NUMERICS FINGERPRINT DIFFERS: 1 of {total} computations" in err
    assert "first: 'softmax'" in err


def test_the_check_fails_on_a_difference_in_any_single_computation(
    mine, tmp_path, monkeypatch, capsys
):
    """Each computation planted in turn (the last one too), and one missing from either side."""
    monkeypatch.setattr(fingerprint, "fingerprint", lambda: mine)  # this machine's, computed once
    reference = tmp_path / "ref.txt"
    lines = mine.splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if not line.startswith("#")]
    for i in rows:
        h, _, name = lines[i].partition("  ")
        planted = "0" * len(h) if h != "0" * len(h) else "1" * len(h)
        reference.write_text("".join(lines[:i] + [f"{planted}  {name}"] + lines[i + 1 :]))
        assert fingerprint.main(["--check", str(reference)]) == 1, name
        assert f"first: {name.strip()!r}" in capsys.readouterr().err
    for i in (rows[0], rows[len(rows) // 2], rows[-1]):  # a computation the reference lacks
        reference.write_text("".join(lines[:i] + lines[i + 1 :]))
        assert fingerprint.main(["--check", str(reference)]) == 1
        capsys.readouterr()


def test_a_missing_reference_file_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit):
        fingerprint.main(["--check", str(tmp_path / "nowhere.txt")])


@pytest.mark.skipif(not numerics._is_x86_64(), reason="the pinning is an x86-64 promise")
def test_the_check_fails_naming_the_operation_when_a_pin_is_changed(mine, tmp_path):
    """torch's kernels unpinned to their scalar path: the first element-wise kernel is named."""
    reference = tmp_path / "ref.txt"
    reference.write_text(mine)
    env = {**os.environ, **numerics.PINNED, numerics.OPT_OUT: "1",
           "ATEN_CPU_CAPABILITY": "default"}  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "lpe.tools.fingerprint", "--check", str(reference)],
                         env=env, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 1
    assert "NUMERICS FINGERPRINT DIFFERS" in run.stderr
    first = run.stderr.split("first: '")[1].split("'")[0]
    assert first in fingerprint.parse(mine)  # a computation of the fingerprint, by name


def test_this_machine_matches_the_committed_reference_or_says_which_computation_differs():
    """The committed reference fingerprint parses and has every computation this code makes;
    whether this machine matches it is decided in .ci/run (exact or noise comparison)."""
    committed = (fingerprint.REFERENCE).read_text()
    assert "# cpu: " in committed
    assert set(fingerprint.parse(committed)) == {n for n, _ in fingerprint.computations()}
