"""The member-source registry (lpe.methods): what the stages, reports and rules iterate."""

from __future__ import annotations

from lpe import methods as sources
from lpe.reports.claims import BASELINE_NAMES, FAST_NAMES
from lpe.reports.fast import NAMES as FAST_REPORT_NAMES
from lpe.reports.tabulate import METHOD_NAMES
from lpe.stages.score import RUN_NAMES
from lpe.training.finetuning import FINETUNING, POSTERIORS


def test_the_registry_lists_every_source_of_the_paper_once():
    names = [s.name for s in sources.SOURCES]
    assert len(names) == len(set(names))
    assert {"fp32", "rtn", "lpe-bsr", "swag-bma", "ivon-bma", "gaussian-noise", "mc-dropout",
            "sse", "csgld", "de", "multiivon", "batchensemble"} <= set(names)  # fmt: skip
    for source in sources.SOURCES:
        assert source.family in ("reference", "posterior", "baseline", "fast")
        assert source.label and source.members and source.budget


def test_the_consumers_take_their_names_and_labels_from_it():
    fast = [s.name for s in sources.family("fast")]
    assert list(sources.fast_sources()) == fast
    assert FAST_REPORT_NAMES == {s.name: s.label for s in sources.family("fast")}
    assert set(FAST_NAMES) == set(sources.fast_with_lpe()) == set(fast) - {"batchensemble"}
    assert set(BASELINE_NAMES) == {s.name for s in sources.family("baseline")}
    assert METHOD_NAMES == {"fp32": "FP32", "rtn": "RTN", "lpe-bsr": "LPE-BSR"}
    # every source and every fast source's LPE-BSR variant, by its registry name: no renaming
    assert "sse+lpe-bsr" in RUN_NAMES and "bsr" not in RUN_NAMES
    assert RUN_NAMES >= {s.name for s in sources.SOURCES}
    assert "batchensemble+lpe-bsr" not in RUN_NAMES  # its members share weights
    assert {sources.rounding_run(r) for r in ("rtn", "bsr")} == {"rtn", "lpe-bsr"} <= RUN_NAMES


def test_a_method_module_holds_what_its_registry_line_promises():
    sources.load_all()
    for source in sources.SOURCES:
        if not source.module:
            continue
        spec = sources.spec(source.name)  # its module's one declaration, named as its line
        # Table 6's ensembles: a baseline in the spec, a candidates list or a chooser in the line
        assert (spec.baseline is not None) == (source in sources.table6()), source.name
        assert (spec.fast is not None) == (source.family == "fast"), source.name
        if source.family == "posterior":  # it trains with its line's optimizer, ends in its type
            assert FINETUNING[source.optimizer] is spec.finetuning, source.name
            assert POSTERIORS[spec.posterior.kind] is spec.posterior, source.name
        else:
            assert spec.posterior is None, source.name
    chooser = [s for s in sources.table6() if s.choice_of]
    assert all(sources.BY_NAME[s.choice_of].candidates for s in chooser)  # it chooses on its own


def test_table6_and_the_claims_take_rows_and_wording_from_the_modules():
    from lpe.reports.claims.baselines import CHOICE_NAMES
    from lpe.reports.table6 import ROWS

    assert list(ROWS) == ["fp32", *(s.name for s in sources.table6())]
    assert ROWS["gaussian-matched"] == "Gaussian noise, BSR's variance"
    assert CHOICE_NAMES == {"lpe-bsr": "LPE-BSR INT-{:g}", "gaussian-noise": "noise scale {:g}",
                            "mc-dropout": "dropout rate {:g}"}  # fmt: skip
