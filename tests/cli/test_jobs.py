"""Typed jobs (lpe.core.jobs, lpe.cli.jobs): a stage's flags are generated from its job's fields,
``--settings`` fills the same job that ``from_settings`` builds from the config, and a stage's
``main`` is one library call on one job."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json

import numpy as np
import pytest
from helpers import schema_default

import lpe.stages.baselines
import lpe.stages.bma
import lpe.stages.data
import lpe.stages.download_checkpoint
import lpe.stages.ensembles
import lpe.stages.fast_predict
import lpe.stages.fast_train
import lpe.stages.finetune
import lpe.stages.generate
import lpe.stages.landscape
import lpe.stages.mmlu
import lpe.stages.predict
import lpe.stages.score
import lpe.stages.select_model
import lpe.stages.train
from lpe.cli.jobs import from_cli
from lpe.core.jobs import Job, config_keys, configured, from_settings, job_of, setting
from lpe.core.settings import lookup, pick, settings_json
from lpe.methods import fast_sources
from lpe.tools.config import ROOT, load_config_file, load_schema, validate

STAGES = sorted(p.stem for p in (ROOT / "lpe/stages").glob("*.py") if p.stem != "__init__")
# the stages whose parsers are still written by hand (lpe.cli.flags): the list only shrinks
HAND_WRITTEN: set[str] = set()
JOB_STAGES = {
    module: getattr(module, next(n for n in dir(module) if n.endswith("Job") and n != "Job"
                                  and n != "FastJob"))
    for module in (importlib.import_module(f"lpe.stages.{s}") for s in STAGES
                   if s not in HAND_WRITTEN)
}  # fmt: skip
# a job's own values (paths, seeds; not config keys), as a rule would give them
OWN = {
    lpe.stages.baselines.BaselinesJob: {"checkpoint": "c.safetensors", "data": "d.npz",
                                        "method": "gaussian-matched", "members": 3,
                                        "seeds": [0, 1], "out": ["a.npz", "b.npz"],
                                        "choice_out": "c.json"},
    lpe.stages.bma.BmaJob: {"checkpoint": "s.safetensors", "posterior": "p.safetensors",
                            "data": "d.npz", "seeds": [0, 1], "out": ["a.npz", "b.npz"]},
    lpe.stages.data.DataJob: {"out": "d.npz"},
    lpe.stages.download_checkpoint.DownloadJob: {"name": "vit_b+zeroshot", "out": "v.safetensors"},
    lpe.stages.ensembles.EnsemblesJob: {"checkpoint": "c.safetensors", "data": "d.npz",
                                        "format": "int4", "seeds": [0, 1],
                                        "members_out": ["m0", "m1"], "out": ["p0.npz", "p1.npz"],
                                        "rtn_members_out": "r", "rtn_out": "r.npz"},
    lpe.stages.fast_predict.FastPredictJob: {"sources": "f", "data": "d.npz", "format": "int5",
                                             "seeds": [0, 1], "members_out": ["m0", "m1"],
                                             "out": ["a.npz", "b.npz"], "fp32_out": "f.npz"},
    lpe.stages.fast_train.FastTrainJob: {"method": "sse", "checkpoint": "c.safetensors",
                                         "data": "d.npz", "out": "sources"},
    lpe.stages.finetune.FinetuneJob: {"checkpoint": "c.safetensors", "data": "d.npz",
                                      "optimizer": "swag", "out": "s.safetensors",
                                      "posterior": "p.safetensors"},
    lpe.stages.generate.GenerateJob: {"checkpoint": "c.safetensors", "method": "bsr",
                                      "format": "nf4", "out": "m"},
    lpe.stages.landscape.LandscapeJob: {"checkpoint": "s.safetensors", "second": "t.safetensors",
                                        "member": "m", "data": "d.npz", "out": "l.npz"},
    lpe.stages.mmlu.MmluDownload: {"name": "meta-llama/Meta-Llama-3-8B", "out": "m"},
    lpe.stages.mmlu.MmluPredict: {"model": "m", "mmlu": "root", "out": "p.npz"},
    lpe.stages.predict.PredictJob: {"checkpoint": "c.safetensors", "data": "d.npz",
                                    "out": "p.npz", "members_per_call": 2},
    lpe.stages.score.ScoreJob: {"preds": ["a.npz", "b.npz"], "out": "scores.csv"},
    lpe.stages.select_model.SelectModelJob: {"checkpoints": ["a", "b"], "data": "d.npz",
                                             "format": "int5", "configured": "vit_mini_t",
                                             "out": "choice.md"},
    lpe.stages.train.TrainJob: {"data": "d.npz", "model": "vit_mini_t", "epochs": 3, "lr": 0.002,
                                "out": "c.safetensors"},
}  # fmt: skip


def jobs_of(job_type) -> list[type]:
    """A stage's jobs: its job, or one per subcommand (``mmlu``)."""
    return list(getattr(job_type, "commands", {"": job_type}).values())


def test_every_stage_is_a_typed_job_or_listed_as_hand_written():
    assert set(STAGES) == {m.__name__.rsplit(".", 1)[1] for m in JOB_STAGES} | HAND_WRITTEN
    assert set(OWN) == {job for t in JOB_STAGES.values() for job in jobs_of(t)}


# the values a rule passes under the settings' job section (lpe.core.settings)
JOB_VALUES = {"job.resume": "work/mini/resume/vit_mini_t-swag.pt",
              "job.reuse": "work/mini/checkpoints/vit_mini_t-sgd.safetensors",
              "job.reuse_posterior": "work/mini/posteriors/vit_mini_t-ivon.safetensors",
              "job.openclip": ["ViT-B-32", "openai"],
              "job.setting_file": "work/mini/baselines/vit_mini_t/lpe-bsr-choice.json",
              "job.candidates": None, "job.format": "int5", "job.method": "bsr",
              "job.seed": 1}  # fmt: skip


def flags(values: dict) -> list[str]:
    """The command line of ``values`` (field -> value)."""
    argv = []
    for name, value in values.items():
        argv.append(f"--{name.replace('_', '-')}")
        argv += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return argv


def config(profile: str) -> dict:
    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    return validate(load_config_file(ROOT / f"config/{profile}.yaml"), schema)


# a job picked by one of its values (chosen_by): each of its jobs, as the stage's command line
CHOSEN = [(lpe.stages.fast_train.FastTrainJob, {"method": m}) for m in fast_sources()]


@pytest.mark.parametrize("profile", ["mini", "paper"])
@pytest.mark.parametrize(
    ("job_type", "own"),
    [*((t, {}) for t in OWN), *CHOSEN],
    ids=lambda v: v.__name__ if isinstance(v, type) else "-".join(map(str, v.values())),
)
def test_a_job_round_trips_from_the_config(job_type, own, profile):
    """The job ``--settings`` and flags make (what a rule runs) is the job ``from_settings``
    makes from the config, and each config-keyed field holds its key's value."""
    own = {**OWN[job_type], **own}
    chosen = job_of(job_type, own.get(getattr(job_type, "chosen_by", None) or ""))
    keys = list(configured(chosen))
    section = pick(config(profile), [k for k in keys if not k.startswith("job.")])
    for key in (k for k in keys if k.startswith("job.")):  # the job's own values, as a rule's
        section.setdefault("job", {})[key.split(".", 1)[1]] = JOB_VALUES[key]
    job = from_settings(job_type, section, **own)
    argv = [*flags(own), *(["--settings", settings_json(section)] if keys else [])]
    assert type(job) is chosen and from_cli(job_type, argv) == job
    for key, fields in configured(chosen).items():
        # the last key wins; a flag on the command line (own) wins over every key
        for field in (f for f in fields if config_keys(f)[-1] == key and f.name not in own):
            convert = field.metadata["from_config"] or (lambda v: v)
            expected = convert(lookup(section, key))
            expected = tuple(expected) if isinstance(expected, list) else expected
            assert getattr(job, field.name) == expected, (key, field.name)


@pytest.mark.parametrize("job_type", list(OWN), ids=lambda t: t.__name__)
def test_a_config_keyed_field_defaults_to_the_schemas_default(job_type):
    """One default per key: a stage run by hand without a flag runs as the workflow does with
    the key left out of the config."""
    for key, fields in configured(job_type).items():
        # a field derived from a key (calibrate, from predict.split) is off unless asked for; a
        # job.* key is no config key
        if key.startswith("job."):
            continue
        for field in (f for f in fields if f.metadata["from_config"] is None):
            default = schema_default(key)
            assert field.default == (tuple(default) if isinstance(default, list) else default)


@pytest.mark.parametrize("module", list(JOB_STAGES), ids=lambda m: m.__name__)
def test_a_stages_main_builds_its_job_once_and_makes_one_library_call(module):
    """``main`` is exactly ``run(from_cli(Job, argv, ...))``: no flag is read, and no work done,
    outside the job and the library function."""
    tree = ast.parse(inspect.getsource(module.main))
    (body,) = tree.body[0].body
    call = body.value
    assert isinstance(body, ast.Expr) and call.func.id == "run"
    (inner,) = call.args
    assert inner.func.id == "from_cli" and inner.args[0].id == JOB_STAGES[module].__name__
    called = [ast.unparse(n.func) for n in ast.walk(body) if isinstance(n, ast.Call)]
    assert called == ["run", "from_cli", "__doc__.splitlines"], called  # the description only


def test_the_main_check_sees_a_stage_that_does_more():
    source = "def main(argv=None):\n    job = from_cli(Job, argv)\n    run(job)\n"
    (function,) = ast.parse(source).body
    assert len(function.body) == 2  # two statements: the test above refuses such a main


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample(Job):
    name: str = setting(help="required")
    rates: tuple[float, ...] = setting((0.1,), "many", config="fast.sse.lr")
    keep: bool = setting(True, "a switch", config="quant.per_channel")
    out: str | None = setting(None, "optional value", optional_value=True)
    count: int = setting(1, "a count", choices=(1, 2, 3))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.count == 3 and not self.keep:
            raise ValueError("count 3 needs keep")


def test_flags_are_typed_by_the_fields():
    job = from_cli(Sample, ["--name", "a", "--rates", "1", "2", "--no-keep", "--out", "--count=2"])
    assert job == Sample(name="a", rates=(1.0, 2.0), keep=False, out=None, count=2)
    assert all(type(r) is float for r in job.rates)
    assert from_cli(Sample, ["--name", "a"]) == Sample(name="a")


def test_settings_fill_the_config_keyed_fields_and_a_flag_wins():
    settings = settings_json({"fast": {"sse": {"lr": [1, 0.5]}}, "quant": {"per_channel": False}})
    job = from_cli(Sample, ["--name", "a", "--settings", settings])
    assert job == from_settings(Sample, json.loads(settings), name="a")
    assert (job.rates, job.keep) == ((1.0, 0.5), False)
    assert from_cli(Sample, ["--name", "a", "--settings", settings, "--keep"]).keep is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--name"),
        (["--name", "a", "--count", "4"], "invalid choice"),
        (["--name", "a", "--count", "3", "--no-keep"], "count 3 needs keep"),
        (["--name", "a", "--settings", '{"quant": {}}'], "'fast.sse.lr'"),
    ],
)
def test_a_bad_command_line_stops_with_one_line_naming_it(argv, message, capsys):
    with pytest.raises(SystemExit):
        from_cli(Sample, argv)
    assert message in capsys.readouterr().err


def test_a_job_that_reads_no_config_key_has_no_settings_flag(capsys):
    with pytest.raises(SystemExit):
        argv = ["--preds", "a.npz", "--out", "s.csv", "--settings", "{}"]
        from_cli(lpe.stages.score.ScoreJob, argv)
    assert "unrecognized arguments: --settings" in capsys.readouterr().err


def test_a_bad_job_is_refused_without_any_command_line():
    with pytest.raises(ValueError, match="count 3 needs keep"):
        Sample(name="a", count=3, keep=False)
    with pytest.raises(ValueError, match="unknown number format 'int1'"):
        lpe.stages.generate.GenerateJob(checkpoint="c", method="bsr", format="int1", out="m")
    with pytest.raises(ValueError, match="nothing to do"):
        lpe.stages.ensembles.EnsemblesJob(checkpoint="c", data="d", format="int4")
    with pytest.raises(KeyError, match="'quant.exclude'"):
        from_settings(lpe.stages.generate.GenerateJob, {"quant": {"per_channel": True}})


def test_a_stage_runs_from_python_as_from_its_command_line(tmp_path, checkpoint, data):
    """``run(Job(...))``, no command line: the same members and predictions as ``main``."""
    own = {"checkpoint": str(checkpoint), "data": str(data), "format": "int4", "members": 2,
           "batch_size": 7, "device": "cpu"}  # fmt: skip
    for way in ("python", "cli"):
        paths = {"seeds": [3], "members_out": [str(tmp_path / way)],
                 "out": [str(tmp_path / f"{way}.npz")]}  # fmt: skip
        if way == "python":
            lpe.stages.ensembles.run(lpe.stages.ensembles.EnsemblesJob(**own, **{
                k: tuple(v) for k, v in paths.items()}))  # fmt: skip
        else:
            lpe.stages.ensembles.main(flags({**own, **paths}))
    with np.load(tmp_path / "python.npz") as a, np.load(tmp_path / "cli.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if "seconds" not in key:  # wall time
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_stage_of_subcommands_takes_its_subcommand_first(capsys):
    mmlu = lpe.stages.mmlu
    argv = ["--model", "m", "--mmlu", "root", "--out", "p.npz", "--format", "int4"]
    job = from_cli(mmlu.MmluJob, ["predict", *argv])
    assert job == mmlu.MmluPredict(model="m", mmlu="root", out="p.npz", format="int4")
    assert from_cli(mmlu.MmluJob, ["download", "--name", "n", "--cache", "c", "--out", "o"]) == (
        mmlu.MmluDownload(name="n", cache="c", out="o")
    )
    with pytest.raises(SystemExit):
        from_cli(mmlu.MmluJob, ["train", *argv])
    assert "invalid choice: 'train' (choose from 'download', 'predict')" in capsys.readouterr().err
