"""Which format and how many members: the library call and the command, offline."""

import math

import pandas as pd
import pytest
import timm
import torch
from test_apply import _wnid_folder

from lpe import LowPrecisionEnsemble
from lpe.core import metrics
from lpe.evaluation.choice import choose, plot_choice
from lpe.tools.choose import main as choose_main

TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4)


def _batches(seed: int, count: int, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 4, (size,), generator=g))
            for _ in range(count)]  # fmt: skip


@pytest.fixture(scope="module")
def searched():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT).eval()
    held_out, evaluated = _batches(1, 2), _batches(2, 3)
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    choice = choose(model, held_out, evaluated, ["int8", "int4"], sizes=(2, 3), seed=7,
                    progress=False)  # fmt: skip
    return model, held_out, evaluated, choice, len(forwards)


def test_each_member_runs_once_and_the_smaller_ensembles_are_prefixes(searched):
    model, held_out, evaluated, choice, forwards = searched
    # FP32, then per format RTN and 3 members, each once over the 2 + 3 batches
    assert forwards == (1 + 2 * (1 + 3)) * 5
    table = choice.table
    assert list(zip(table["format"], table["method"], table["members"], strict=True)) == [
        ("fp32", "fp32", 1), ("int8", "rtn", 1), ("int8", "lpe-bsr", 2), ("int8", "lpe-bsr", 3),
        ("int4", "rtn", 1), ("int4", "lpe-bsr", 2), ("int4", "lpe-bsr", 3),
    ]  # fmt: skip
    # the M = 2 row is the ensemble of 2 members with the same seed, evaluated on its own
    alone = LowPrecisionEnsemble(model, "int4", members=2, seed=7)
    log_probs, labels = alone.evaluate(evaluated)
    row = table[(table["format"] == "int4") & (table["members"] == 2)].iloc[0]
    assert row["nll"] == pytest.approx(metrics.nll(log_probs[None], labels), abs=1e-6)
    held_lp, held_labels = alone.evaluate(held_out)
    assert row["held_out_nll"] == pytest.approx(metrics.nll(held_lp[None], held_labels), abs=1e-6)
    # both accountings: M full members, and the file (b + M bits per quantized weight)
    bsr = table[table["method"] == "lpe-bsr"]
    assert (bsr["stored_mbit"] < bsr["memory_mbit"]).all()
    rtn = table[(table["format"] == "int4") & (table["method"] == "rtn")].iloc[0]
    assert row["memory_mbit"] == pytest.approx(2 * rtn["memory_mbit"])
    assert alone.bits / 1e6 == pytest.approx(row["stored_mbit"])


def test_the_choice_is_the_lowest_held_out_nll_within_the_budget(searched):
    model, held_out, evaluated, choice, _ = searched
    table = choice.table
    assert table["chosen"].sum() == 1
    assert choice.chosen["held_out_nll"] == table["held_out_nll"].min()  # no budget: any row
    budget = float(table["stored_mbit"].sort_values().iloc[2])  # the three smallest fit
    small = choose(model, held_out, evaluated, ["int8", "int4"], sizes=(2, 3), seed=7,
                   budget_mbit=budget, progress=False)  # fmt: skip
    fits = small.table[small.table["stored_mbit"] <= budget]
    assert list(small.table["in_budget"]) == list(small.table["stored_mbit"] <= budget)
    assert small.chosen["held_out_nll"] == fits["held_out_nll"].min()
    assert small.chosen["stored_mbit"] <= budget
    # the same numbers whatever the budget: only the choice moves
    pd.testing.assert_frame_equal(small.table.drop(columns=["in_budget", "chosen"]),
                                  table.drop(columns=["in_budget", "chosen"]))  # fmt: skip
    # the checks pair the choice with RTN of its format (when it is LPE-BSR), FP32, the runner-up
    lines = "\n".join(small.lines())
    assert "chosen on the held-out part, within" in lines
    for check in small.checks:
        assert check.outcome in ("holds", "fails", "within noise")
        assert math.isfinite(check.parts[0][1]) and check.parts[0][1] > 0
    smallest = float(table["stored_mbit"].min())  # an RTN member: int4's
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    with pytest.raises(ValueError, match=f"no candidate fits 0.001 Mbit .*{smallest:.3f} Mbit"):
        choose(model, held_out, evaluated, ["int8", "int4"], sizes=(2,), budget_mbit=0.001,
               progress=False)  # fmt: skip
    hook.remove()
    assert not forwards  # refused before any pass over the data


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(formats=["int33"]), "unknown formats"),
        (dict(sizes=(1, 2)), "M = 1 is RTN"),
        (dict(sizes=(5, 2)), "increasing"),
        (dict(budget_mbit=-1.0), "must be > 0"),
        (dict(accounting="disk"), "accounting must be one of"),
    ],
)
def test_bad_arguments_are_refused_before_any_member_is_drawn(kwargs, message):
    class Untouchable(torch.nn.Linear):
        def forward(self, x):
            raise AssertionError("evaluated before the arguments were checked")

    with pytest.raises(ValueError, match=message):
        choose(Untouchable(4, 4), [], [], **{"formats": ["int4"], **kwargs}, progress=False)


def test_the_figure_is_written_and_leaves_pyplot_alone(searched, tmp_path):
    import matplotlib.pyplot as plt

    backend, figures = plt.get_backend(), plt.get_fignums()
    plot_choice(searched[3], tmp_path / "choice.png")
    assert (tmp_path / "choice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (plt.get_backend(), plt.get_fignums()) == (backend, figures)


def test_the_command_chooses_on_a_cnn_and_a_19_class_wordnet_folder(tmp_path, capsys):
    from lpe.data.images import imagenet_wnids

    folder = _wnid_folder(tmp_path / "subset", imagenet_wnids()[:19])  # 19 of 1000 classes
    out, figure = tmp_path / "choice.csv", tmp_path / "choice.png"
    choose_main(["--model", "efficientnet_lite0", "--no-pretrained", "--images", str(folder),
                 "--formats", "int8", "fp4_e2m1", "--sizes", "2", "3", "--held-out", "0.3",
                 "--budget-mbit", "60", "--batch-size", "16", "--device", "cpu",
                 "--out", str(out), "--figure", str(figure)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "choosing on 11 held-out images" in printed and "reporting on the other 27" in printed
    assert "policy: quantized" in printed and "conv_stem.*, classifier.*" in printed
    assert "chosen on the held-out part, within 60 Mbit (stored)" in printed
    assert "beats FP32" in printed and "vs band ±" in printed
    table = pd.read_csv(out)
    assert len(table) == 1 + 2 * 3 and table["chosen"].sum() == 1
    assert figure.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        choose_main(["--model", "efficientnet_lite0", "--no-pretrained", "--images", str(folder),
                     "--sizes", "1", "2"])  # fmt: skip
    assert "M = 1 is RTN" in capsys.readouterr().err
