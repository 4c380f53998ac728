"""The claims report: does each claim of the paper reproduce here? With the numbers and the noise.

A package by concern: ``claim`` (a claim and its verdict), ``bands`` (the scores summarised and
the noise bands), one module per claim family in the paper's order (``lpe_bsr``: claims 1-3, 7-9;
``bma``: claim 4; ``fast``: claim 5; ``baselines``: claim 6; ``memory``: claim 10) and ``report``
(the Markdown report and its command, ``python -m lpe.reports.claims``). The decision rule of a
check is ``lpe.core.checks``'s.
"""

from lpe.reports.claims.bands import (
    CONFIDENCE,
    TRAINED_MARGINS,
    decided,
    over_checkpoints,
    per_checkpoint,
    student_factor,
    summary,
    with_training_bands,
)
from lpe.reports.claims.baselines import BASELINE_NAMES, CHOICE_NAMES, choices_text, claim6
from lpe.reports.claims.bma import COMPETITIVE, claim4
from lpe.reports.claims.claim import Claim
from lpe.reports.claims.fast import (
    FAST_NAMES,
    checkpoint_spread,
    claim5,
    copies_per_source,
    rate_choices,
)
from lpe.reports.claims.lpe_bsr import claim1, claim2, claim3, claim7, claim8, claim9
from lpe.reports.claims.memory import claim10, members_in_fp32_memory
from lpe.reports.claims.report import CLAIMS_SETTINGS, gate_section, main, report

__all__ = [
    "BASELINE_NAMES",
    "CHOICE_NAMES",
    "CLAIMS_SETTINGS",
    "COMPETITIVE",
    "CONFIDENCE",
    "FAST_NAMES",
    "TRAINED_MARGINS",
    "Claim",
    "checkpoint_spread",
    "choices_text",
    "claim1",
    "claim2",
    "claim3",
    "claim4",
    "claim5",
    "claim6",
    "claim7",
    "claim8",
    "claim9",
    "claim10",
    "copies_per_source",
    "decided",
    "gate_section",
    "main",
    "members_in_fp32_memory",
    "over_checkpoints",
    "per_checkpoint",
    "rate_choices",
    "report",
    "student_factor",
    "summary",
    "with_training_bands",
]
