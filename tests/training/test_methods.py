"""The house's training side: one loop, methods by registry, a fast source = a module + an entry."""

import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import FAST_RUN as RUN
from helpers import TRAINING, budgets
from helpers import train_fast as train

from lpe import methods as registry
from lpe.training.finetuning import FINETUNING
from lpe.training.sources import Setting

registry.load_all()

SIZES = TRAINING  # the data fixture's sizes (tests/conftest.py)
LPE = Path(__file__).resolve().parents[2] / "lpe"
NAMES = sorted({*FINETUNING, "adamw", *(s.name for s in registry.family("fast"))})
# a comparison with a method's name: `== "sse"`, `!= "ivon"`, `in ("swag", "ivon")`
NAME = "|".join(NAMES)
CHAIN = re.compile(rf'[!=]=\s*"({NAME})"|\bin\s*[(\[{{][^)\]}}]*"({NAME})"')
# where training methods are run: the registry (lpe.methods) and the methods' modules say which
CHECKED = ("training", "stages", "methods", "evaluation", "members")


def test_every_fast_source_names_a_trainer_with_the_interface():
    for source in registry.family("fast"):
        module = registry.load(source.name)
        assert module.__name__ == f"lpe.methods.{source.module}"
        trainer = registry.spec(source.name).fast
        assert isinstance(trainer.settings, dict)
        assert callable(trainer.check) and callable(trainer.train)
        assert all(isinstance(option, Setting) for option in trainer.options)
    with pytest.raises(ValueError, match="unknown method 'fp32'"):
        registry.load("fp32")  # no module: the checkpoint itself


def chains(text: str) -> list[str]:
    return [m.group(0) for m in CHAIN.finditer(text)]


def test_no_if_chain_over_method_names_outside_the_registries():
    found = {}
    for package in CHECKED:
        for path in (LPE / package).rglob("*.py"):
            if path != LPE / "methods/__init__.py" and (hits := chains(path.read_text())):
                found[str(path.relative_to(LPE))] = hits
    assert found == {}


def test_the_check_sees_a_planted_chain():
    planted = 'if cfg.optimizer == "ivon":\n    pass\nelif method in ("sse", "csgld"):\n    pass\n'
    assert chains(planted) == ['== "ivon"', 'in ("sse", "csgld"']
    assert chains('label = "sse"\nif x == "other":\n    pass\n') == []


NEW_SOURCE = '''
"""A fast source for the test: one SGD run at half the learning rate."""
from lpe.methods import FastSource, Spec
from lpe.training.sources import Setting
from lpe.training.finetuning import finetune_config, run_finetune


def check(options):
    return None if options["shrink"] > 0 else "--shrink must be > 0"


def train(job):
    options = job.options
    cfg = finetune_config(options, optimizer="sgd", lr=options["lr"] * options["shrink"])
    model, summary, _, _ = run_finetune(job.state, job.info, job.data, cfg, job.device)
    job.sources.spent += summary["backward_passes"] - job.info.backward_passes
    job.sources.add(model, summary)
    return {"lr": cfg.settings.lr}


SPEC = Spec("halfsgd", fast=FastSource(
    settings={},
    options=(Setting("shrink", float, 0.5, help="the learning rate's factor"),),
    check=check,
    train=train,
))
'''


def test_a_new_fast_source_is_one_module_and_one_registry_entry(
    tmp_path, monkeypatch, checkpoint, data
):
    (tmp_path / "halfsgd.py").write_text(textwrap.dedent(NEW_SOURCE))
    monkeypatch.setattr(registry, "__path__", [*registry.__path__, str(tmp_path)])  # a plugin
    entry = replace(registry.BY_NAME["de"], name="halfsgd", label="Half SGD", module="halfsgd")
    monkeypatch.setattr(registry, "SOURCES", (*registry.SOURCES, entry))
    monkeypatch.setitem(registry.BY_NAME, "halfsgd", entry)
    manifest = train(checkpoint, data, tmp_path / "s", "halfsgd", "--lr", 0.002, "--shrink", 0.25)
    assert manifest["method"] == "halfsgd" and manifest["settings"]["lr"] == 0.0005
    assert budgets(manifest) == [RUN]
    with pytest.raises(SystemExit):  # its own check, through the stage
        train(checkpoint, data, tmp_path / "bad", "halfsgd", "--shrink", 0)
    assert not (tmp_path / "bad").exists()
