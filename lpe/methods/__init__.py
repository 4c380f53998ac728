"""The ensemble methods: one module each, and this registry of every way the suite gets ensemble
members (no torch import: the workflow reads it while it builds the DAG).

A method's module holds all of it: its settings and their config keys, its optimizer and the
loop's hooks (registered as a fine-tuning method, ``lpe.training.finetuning``), its posterior or
its members' mathematics, its fast source's trainer (``lpe.training.sources``), and declares
them in one object, its ``SPEC`` (:class:`Spec`: name, fine-tuning method, posterior, baseline,
fast source). Its line here gives its name (the ``method`` its predictions
files and score CSVs hold), its label, its family, what its members are and what they cost, its
module and, for Table 6's training-free ensembles, the config list their setting is chosen from
(``candidates``) or the method whose choice they take (``choice_of``). The score stage, the
reports, the claims and the rule files iterate this registry, so a new method is its module plus
one line here (``docs/extending.md``), or, from another package, its module plus an entry point
of the group ``lpe.methods`` naming its line (:func:`plugins`).

Families: ``reference`` (Table 1's FP32 model, its RTN member and LPE-BSR), ``posterior`` (BMA
over SWAG's and IVON's posteriors; Figures 2-8), ``baseline`` (training-free perturbations;
Table 6) and ``fast`` (ensembles from one fine-tuning budget; Figures 4, 5, 9 and Table 5). A
fast source with ``lpe_copies`` is also run with LPE-BSR copies of every source member (method
``<name>+lpe-bsr``), at no extra training budget. ``sgd`` (Figure 2's SGD run, ``de``'s runs) is
a fine-tuning method without members of its own: a module, no line.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class FastSource:
    """A fast source's trainer (``lpe.training.sources``): its own config keys -> its options
    (``settings``), its own options (``options``: ``lpe.training.sources.Setting`` values, offered
    as flags beside the shared ones), ``check(options)`` (a problem, or None) and
    ``train(job)`` (its sources; returns the settings its manifest records)."""

    settings: Mapping[str, str]
    options: tuple
    check: Callable[[Mapping[str, Any]], str | None]
    train: Callable[[Any], dict]


@dataclass(frozen=True)
class Spec:
    """What a method module declares of itself, in one object (its module's ``SPEC``): its
    registry name, and the parts of its family. ``finetuning``: the fine-tuning method it trains
    with (``lpe.training.finetuning``: registered under its registry line's ``optimizer``) and
    ``posterior``: the posterior type that method ends in (the posterior family); ``baseline``:
    how Table 6 makes, stores and names its members (``lpe.evaluation.baselines.Baseline``);
    ``fast``: its trainer (:class:`FastSource`). ``tests/methods/test_registry.py`` checks each
    module's spec against its registry line."""

    name: str
    finetuning: type | None = None
    posterior: type | None = None
    baseline: Any = None
    fast: FastSource | None = None


@dataclass(frozen=True)
class Source:
    name: str
    label: str
    family: str
    members: str  # how its members are trained or drawn
    budget: str  # the training budget its members cost (backward passes)
    lpe_copies: bool = False  # fast sources: also with LPE-BSR copies of each member
    module: str = ""  # its module in this package (lpe.methods.<module>), if it has one
    # Table 6's training-free ensembles (their spec's baseline): the config list their setting
    # is chosen from on validation, or the method whose choice they take
    candidates: str = ""
    choice_of: str = ""
    # posterior methods: the fine-tuning method whose run gives the solution and its posterior
    # (the finetune stage's --optimizer, the run names' suffix) and the solution's name
    optimizer: str = ""
    solution: str = ""

    @property
    def module_path(self) -> str:
        """Its module's import path: a plugin's names its own package (``mypkg.laplace``)."""
        return self.module if "." in self.module else f"{__name__}.{self.module}"


FREE = "none beyond the checkpoint's"
# one line per method, read as a table (so not reflowed by the formatter)
SOURCES = (
    Source("fp32", "FP32", "reference", "the checkpoint itself", FREE),
    Source("rtn", "RTN", "reference", "the checkpoint rounded to the nearest value", FREE),
    Source("lpe-bsr", "LPE-BSR", "reference",
           "Bernoulli stochastic rounding of the checkpoint, one seed per member", FREE,
           module="lpe_bsr", candidates="baselines.formats"),
    Source("swag-bma", "SWAG BMA", "posterior", "draws from SWAG's Gaussian posterior",
           "the SWAG fine-tuning run", module="swag", optimizer="swag", solution="SWA mean"),
    Source("ivon-bma", "IVON BMA", "posterior", "draws from IVON's Gaussian posterior",
           "the IVON fine-tuning run", module="ivon", optimizer="ivon", solution="IVON mean"),
    Source("gaussian-noise", "Gaussian noise", "baseline",
           "the checkpoint plus Gaussian noise of a scale chosen on validation", FREE,
           module="gaussian_noise", candidates="baselines.gaussian_scales"),
    Source("gaussian-matched", "Gaussian noise of BSR's variance", "baseline",
           "the checkpoint plus Gaussian noise of LPE-BSR's per-weight variance", FREE,
           module="gaussian_matched", choice_of="lpe-bsr"),
    Source("mc-dropout", "MC dropout", "baseline",
           "dropout masks at a rate chosen on validation, at test time", FREE,
           module="mc_dropout", candidates="baselines.dropout_rates"),
    Source("sse", "SSE", "fast", "a snapshot at the end of each cyclic learning-rate cycle",
           "the cycles up to the snapshot", lpe_copies=True, module="sse"),
    Source("csgld", "CSGLD", "fast", "a sample at the end of each cycle of cyclical SGLD",
           "the cycles up to the sample", lpe_copies=True, module="csgld"),
    Source("de", "DE", "fast", "independent fine-tuning runs (run 1: Figure 2's SGD run)",
           "one run per member", lpe_copies=True, module="de"),
    Source("multiivon", "MultiIVON", "fast",
           "posterior draws of independent IVON runs (run 1: Figure 2's IVON run)",
           "one run per IVON run, whatever its draws", lpe_copies=True,
           module="multiivon"),
    Source("batchensemble", "BatchEnsemble", "fast",
           "the K rank-1 members of one BatchEnsemble run (they share weights: no LPE-BSR copies)",
           "K runs' backward passes (each minibatch goes through every member)",
           module="batchensemble"),
)  # fmt: skip
PLUGINS = "lpe.methods"  # the entry-point group of methods from other packages


def plugins() -> tuple[Source, ...]:
    """The registry lines other installed packages add: each entry point of the group
    ``lpe.methods`` names a :class:`Source` (``mypkg.registry:SOURCE``; keep that module free
    of torch, the workflow reads it while it builds the DAG; it may import ``Source`` and
    ``FREE`` from here, which exist before the plugins are read) whose ``module`` is its method's
    module by import path. The workflow's subprocesses see the same lines, so a method from
    outside runs through the stages, the rules and the reports like one of this package's."""
    from importlib.metadata import entry_points

    found = tuple(point.load() for point in entry_points(group=PLUGINS))
    if bad := [s for s in found if not isinstance(s, Source) or "." not in s.module]:
        raise ValueError(
            f"entry points of {PLUGINS!r} must name a Source whose module is an "
            f"import path (mypkg.method): {bad}"
        )
    return found


SOURCES = (*SOURCES, *plugins())
BY_NAME = {s.name: s for s in SOURCES}
LPE_SUFFIX = "+lpe-bsr"


def with_lpe(source: str) -> str:
    """The run name of fast source ``source`` with LPE-BSR copies of its members."""
    return f"{source}{LPE_SUFFIX}"


def family(name: str) -> list[Source]:
    return [s for s in SOURCES if s.family == name]


def fast_sources() -> tuple[str, ...]:
    """The fast sources' names (read when called: a test may register one)."""
    return tuple(s.name for s in family("fast"))


def posterior_optimizers() -> list[str]:
    """The fine-tuning methods with a posterior (Figures 2 and 8, claims 4 and 10), in the
    registry's order."""
    return [s.optimizer for s in family("posterior")]


def finetuned_runs() -> list[str]:
    """Every fine-tuning run around the BMA model: SGD's (no posterior) and each posterior
    method's."""
    return ["sgd", *posterior_optimizers()]


def bma_method(optimizer: str) -> str:
    """The registry name of the BMA over ``optimizer``'s posterior (its predictions files'
    ``method``)."""
    for s in family("posterior"):
        if s.optimizer == optimizer:
            return s.name
    raise ValueError(f"no posterior method fine-tunes with {optimizer!r}: {posterior_optimizers()}")


def fast_with_lpe() -> list[str]:
    """The fast sources run with LPE-BSR copies too (Figures 5 and 9, claim 5)."""
    return [s.name for s in family("fast") if s.lpe_copies]


# A members folder's rounding (lpe.members: its files' ``method``) -> the registry name of the
# run it makes, which its predictions file holds
ROUNDING_RUNS = {"rtn": "rtn", "bsr": "lpe-bsr"}


def rounding_run(rounding: str) -> str:
    """The registry name of the run whose members are rounded by ``rounding`` (rtn, bsr)."""
    if rounding not in ROUNDING_RUNS:
        raise ValueError(f"unknown rounding {rounding!r}: {sorted(ROUNDING_RUNS)}")
    return ROUNDING_RUNS[rounding]


def run_names() -> list[str]:
    """Every ``method`` a predictions file may hold, as the score CSVs hold it: the registry's
    names and the fast sources' LPE-BSR variants."""
    return [s.name for s in SOURCES] + [with_lpe(m) for m in fast_with_lpe()]


def load(name: str) -> ModuleType:
    """The module of method ``name`` (a registry line's name), imported (and so registered)."""
    if name not in BY_NAME or not BY_NAME[name].module:
        with_modules = [s.name for s in SOURCES if s.module]
        raise ValueError(f"unknown method {name!r}; the registry's with a module: {with_modules}")
    return importlib.import_module(BY_NAME[name].module_path)


def table6() -> list[Source]:
    """Table 6's training-free ensembles (LPE-BSR among them), in the registry's order."""
    return [s for s in SOURCES if s.candidates or s.choice_of]


def spec(name: str) -> Spec:
    """The spec of method ``name``'s module (its ``SPEC``), refusing one that names another."""
    made = getattr(load(name), "SPEC", None)
    if not isinstance(made, Spec) or made.name != name:
        raise ValueError(f"{BY_NAME[name].module_path}.SPEC must be a Spec named {name!r}")
    return made


def baselines() -> dict:
    """Table 6's training-free ensembles, name -> their spec's ``baseline``
    (``lpe.evaluation.baselines.Baseline``)."""
    return {s.name: spec(s.name).baseline for s in table6()}


def load_all() -> None:
    """Import every method module of this package and of the plugins' lines (:func:`plugins`),
    so each registers its fine-tuning method and posterior type (``lpe.training.finetuning``) in
    the registry's order (``sgd`` first: the others build on it)."""
    ordered = [f"{__name__}.sgd", *(s.module_path for s in SOURCES if s.module)]
    found = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)]
    for module in dict.fromkeys([*ordered, *sorted(found)]):
        importlib.import_module(module)
