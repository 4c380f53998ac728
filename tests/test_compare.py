from pathlib import Path

import pytest

from lpe.compare import main as compare


def make_tree(root: Path, nll="0.2276", verdict="reproduced"):
    (root / "results/mini/tables").mkdir(parents=True)
    (root / "figures/mini").mkdir(parents=True)
    (root / "results/mini/scores.csv").write_text(
        f"model,precision,method,seed,members,nll\nvit_mini_l,int4,lpe-bsr,0,10,{nll}\n"
    )
    (root / "results/mini/tables/table1.md").write_text(
        f"| vit_mini_l | INT-4 | {nll} ± 0.0004 |\n"
    )
    (root / "results/mini/claims.md").write_text(f"**Verdict: {verdict}** (3 of 4 checks pass)\n")
    png = (
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR"
        + (640).to_bytes(4, "big")
        + (480).to_bytes(4, "big")
    )
    (root / "figures/mini/f.png").write_bytes(png)
    (root / "figures/mini/f.pdf").write_bytes(b"%PDF-1.4 ...")


def test_identical_trees_pass(tmp_path, capsys):
    make_tree(tmp_path / "a")
    make_tree(tmp_path / "b")
    assert compare([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "identical numbers" in capsys.readouterr().out


def test_small_drift_within_tolerance_passes(tmp_path):
    make_tree(tmp_path / "a", nll="0.2276")
    make_tree(tmp_path / "b", nll="0.2280")
    assert compare([str(tmp_path / "a"), str(tmp_path / "b")]) == 0


def test_drift_beyond_tolerance_names_the_number(tmp_path, capsys):
    make_tree(tmp_path / "a", nll="0.2276")
    make_tree(tmp_path / "b", nll="0.2500")
    assert compare([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert (
        "scores.csv [model=vit_mini_l, precision=int4, method=lpe-bsr, seed=0, members=10] "
        "nll: reference 0.2276, regenerated 0.25"
    ) in err
    assert "table1.md line 1, number 2" in err  # "4" of INT-4 is number 1


def test_changed_verdict_fails(tmp_path, capsys):
    make_tree(tmp_path / "a", verdict="reproduced")
    make_tree(tmp_path / "b", verdict="not reproduced")
    assert compare([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "claims.md line 1: text differs" in capsys.readouterr().err


@pytest.mark.parametrize("victim", ["results/mini/claims.md", "figures/mini/f.png"])
def test_missing_artifact_fails(tmp_path, capsys, victim):
    make_tree(tmp_path / "a")
    make_tree(tmp_path / "b")
    (tmp_path / "b" / victim).unlink()
    assert compare([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert f"{victim}: in the reference but not regenerated" in capsys.readouterr().err


def test_unexpected_artifact_fails(tmp_path, capsys):
    make_tree(tmp_path / "a")
    make_tree(tmp_path / "b")
    (tmp_path / "b/results/mini/new.csv").write_text("x\n1\n")
    assert compare([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "not in the committed reference" in capsys.readouterr().err


def test_empty_reference_fails(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    make_tree(tmp_path / "b")
    assert compare([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "the reference has no files" in capsys.readouterr().err
