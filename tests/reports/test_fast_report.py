"""Table 5, Figures 5 and 9, and claims 5 and 7 on constructed fast-ensemble scores."""

import pandas as pd
import pytest

from lpe.reports.claims import checkpoint_spread, claim5, copies_per_source
from lpe.reports.fast import curves, formatted, table5
from lpe.reports.tabulate import budget_points
from lpe.stages.score import COLUMNS

RUN = 100  # backward passes of one run


def row(method, members, nll, seed=0, optimizer="sgd", precision="fp32", budget=RUN, bits=32):
    return {
        "model": "m", "optimizer": optimizer, "params": 1000, "precision": precision,
        "method": method, "seed": seed, "members": members, "nll": nll, "err": 10.0,
        "ece": nll / 10, "brier": 0.1, "avg_loss": nll + 0.02, "ambiguity": 0.02,
        "ens_loss": nll, "memory_bits": members * bits * 1000, "backward_passes": budget,
        "forward_passes": members,
    }  # fmt: skip


def fast_scores(lpe_shift: float) -> pd.DataFrame:
    """Two sources per method (budgets 1 and 2 runs); +LPE-BSR has 2 copies per source."""
    rows = []
    for method in ("sse", "csgld", "de", "multiivon"):
        for c in (1, 2):
            rows.append(row(method, c, 0.6 - 0.1 * c, budget=c * RUN))
            for seed in (0, 1):
                for k in (1, 2):  # copy k of source c is member 2 (c - 1) + k
                    rows.append(row(f"{method}+lpe-bsr", 2 * (c - 1) + k,
                                    0.6 - 0.1 * c + lpe_shift + 0.001 * seed, seed,
                                    precision="int5", budget=c * RUN, bits=5))  # fmt: skip
    rows.append(row("fp32", 1, 0.5))
    rows += [row("batchensemble", m, 0.48, budget=4 * RUN) for m in (1, 2)]
    for seed in (0, 1):
        rows += [row("lpe-bsr", m, 0.5 - 0.01 * m, seed, precision="int5", bits=5)
                 for m in (1, 2, 3)]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def test_budget_points_are_the_ensembles_complete_at_each_budget():
    points = budget_points(fast_scores(-0.01), "sse+lpe-bsr")
    assert sorted(points["members"].unique()) == [2, 4]  # both copies of each source
    assert sorted(points["backward_passes"].unique()) == [RUN, 2 * RUN]


def test_claim5_passes_only_where_lpe_bsr_helps_at_every_budget():
    better = claim5(fast_scores(-0.01), fmt="int5")
    assert better.verdict == "reproduced (NLL: reproduced; ECE: reproduced)"
    assert len(better.checks) == 8  # 4 methods x NLL, ECE
    assert "better at 2 of 2 training budgets" in better.checks[0].text
    assert [len(c.parts) for c in better.checks] == [2] * 8  # one margin per budget
    worse = claim5(fast_scores(+0.01), fmt="int5")
    assert worse.verdict == "not reproduced (NLL: not reproduced; ECE: not reproduced)"


def checkpoint_scores(gain: float) -> pd.DataFrame:
    """One trained checkpoint's scores: FP32 0.5, LPE-BSR INT-5 at 1 and 2 members."""
    rows = [row("fp32", 1, 0.5)]
    rows += [row("lpe-bsr", m, 0.5 - gain * (m - 1), 0, precision="int5", bits=5)
             for m in (1, 2)]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def test_claim5_bands_hold_the_spread_over_starting_checkpoints():
    scores = fast_scores(-0.01)  # helps at every budget by 0.01: holds on the draws alone
    assert copies_per_source(scores) == 2
    same = [checkpoint_scores(0.01) for _ in range(3)]
    spreads, text = checkpoint_spread(same, members=2, fmt="int5")
    assert spreads["nll"] == 0.0 and "3 trained checkpoints" in text
    assert claim5(scores, "int5", checkpoint=(spreads, text)).verdict == (
        "reproduced (NLL: reproduced; ECE: reproduced)"
    )
    # checkpoints whose LPE-BSR gains differ by more than the margin: nothing is decided
    apart = [checkpoint_scores(g) for g in (0.0, 0.02, 0.04)]
    spreads, text = checkpoint_spread(apart, members=2, fmt="int5")
    assert spreads["nll"] == pytest.approx(2 * 0.02)  # NOISE_SE x sd of 0, 0.02, 0.04
    wide = claim5(scores, "int5", checkpoint=(spreads, text))
    assert wide.verdict.startswith("undecided (within noise) (NLL: undecided")
    assert "starting checkpoint" in wide.note
    assert checkpoint_spread(apart[:1], members=2, fmt="int5") == ({}, "")  # one: no spread
    with pytest.raises(ValueError, match="no LPE-BSR int4 ensemble of 2 members"):
        checkpoint_spread(apart, members=2, fmt="int4")


def test_table5_rows_and_statistics():
    t = table5(fast_scores(-0.01), fmt="int5", runs=2, sizes=[1, 3])
    assert t["method"].tolist() == ["fp32", "batchensemble", "de", "lpe-bsr", "lpe-bsr"]
    assert t["members"].tolist() == [1, 2, 2, 1, 3]
    lpe = t.iloc[-1]
    assert lpe["nll_mean"] == pytest.approx(0.47) and lpe["seeds"] == 2
    shown = formatted(t, "±")
    assert shown["Method"].tolist()[:3] == ["MAP", "BatchEnsemble", "DE"]
    with pytest.raises(ValueError, match="no scores for LPE-BSR"):
        table5(fast_scores(-0.01), fmt="int4", runs=2, sizes=[1])


def test_figures_have_four_panels_per_method():
    fig = curves(
        fast_scores(-0.01), ["sse", "de", "multiivon"], "int5", pretrain=0, title="Figure 9"
    )
    assert len(fig.axes) == 12
    assert fig.axes[0].get_xlabel() == "fine-tuning budget (backward passes)"
    assert fig.axes[2].get_xlabel() == "memory budget (Mbit)"
    assert fig.axes[1].get_title() == "SSE: ECE vs fine-tuning budget"


def test_table5_and_the_memory_panels_show_the_shared_base_accounting_too():
    scores = fast_scores(-0.01)
    scores["memory_bits_shared"] = scores["memory_bits"]
    copies = scores["precision"] == "int5"  # a base of 5 bits and one plane per member
    scores.loc[copies, "memory_bits_shared"] = (5 + scores["members"]) * 1000
    table = table5(scores, fmt="int5", runs=2, sizes=[1, 3])
    assert table["memory_mbit_shared"].iloc[-1] == pytest.approx((5 + 3) * 1000 / 1e6)
    assert table["memory_mbit"].iloc[-1] == pytest.approx(3 * 5 * 1000 / 1e6)
    assert "Memory, shared base (Mbit)" in formatted(table, "±")
    fig = curves(scores, ["sse"], "int5", pretrain=0, title="Figure 5")
    memory_nll = fig.axes[2]
    labels = [text.get_text() for text in memory_nll.get_legend().get_texts()]
    assert labels == ["SSE (FP32)", "SSE + LPE-BSR INT-5", "SSE + LPE-BSR INT-5, shared base"]
    shared_line = [c for c in memory_nll.containers if c.get_label().endswith("shared base")][0]
    x = shared_line.lines[0].get_xdata()
    assert list(x) == pytest.approx([(5 + 2) * 1000 / 1e6, (5 + 4) * 1000 / 1e6])
    assert "shared base" not in " ".join(formatted(table5(fast_scores(-0.01), "int5", 2, [1]), "±"))
