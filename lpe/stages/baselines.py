"""The ``baselines`` stage: training-free ensembles other than LPE-BSR (Table 6, claim 6).

Each perturbs one trained model and has one setting, chosen on the validation split (never the
test split) from the candidates given, by the NLL of the ensemble; LPE-BSR is one of them, so
that Table 6 fixes no method while tuning the others:

- ``lpe-bsr``, ``gaussian-noise``, ``gaussian-matched``, ``mc-dropout``: the registry's methods
  whose spec has a ``baseline`` (``lpe.methods``; each module says how its members are made,
  how they are stored, and which config list its setting is chosen from). ``gaussian-matched``
  takes the precision ``lpe-bsr`` chose (its choice file, ``--setting-file``).

Output: one predictions file (``lpe.stages.predict``) of the test split per ensemble seed, with the
chosen setting in ``setting``; the validation NLL of every candidate is printed to the log. The
choice is made once, with the first seed's members, and shared by every seed;
``--select-out CHOICE.json`` also writes it, and ``--setting-file CHOICE.json`` uses a choice
made before instead of choosing.

Usage: ``python -m lpe.stages.baselines --checkpoint CKPT --data DATA --method gaussian-noise
--candidates 0.01 0.02 0.05 --members 10 --seeds 0 1 --out P0.npz P1.npz --select-out C.json``
(lpe-bsr's candidates are INT-b formats: ``--candidates int6 int4``); or ``--select-out C.json``
alone (only choose), then ``--setting-file C.json --seeds 1 --out P1.npz``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpe.cli.jobs import from_cli
from lpe.core import metrics
from lpe.core.artifacts import ArtifactError, write_json
from lpe.core.jobs import setting
from lpe.core.runtime import autocast
from lpe.core.selection import at_an_end
from lpe.evaluation import spine
from lpe.evaluation.prediction import Calibrated
from lpe.evaluation.predictions_file import write_evaluated
from lpe.formats.names import int_bits
from lpe.formats.policy import QuantPolicy
from lpe.members.files import member_seed
from lpe.methods import BY_NAME, baselines
from lpe.models.checkpoints import load_checkpoint


def setting_value(value: float | str) -> float:
    """A candidate as the methods take it: a number (a noise scale, a dropout rate), or an INT-b
    format's name (lpe-bsr's precisions, ``baselines.formats``) as its width b."""
    try:
        return float(value)
    except ValueError:
        return float(int_bits(value))


def check_candidates(method: str, candidates: Sequence[float]) -> None:
    if not candidates:
        raise ValueError(f"baselines.{method}: the search has no candidates")
    if problem := BASELINES[method].problem(candidates):
        raise ValueError(problem)


def ensemble(model, state, method, setting, members, *, seed, x, batch_size, device, calib_x=None):
    """The ``method`` ensemble at ``setting``, evaluated on ``x`` (and ``calib_x``, when given)
    through the evaluation spine: member k is the method's member context of seed
    ``member_seed(seed, k)`` (``Baseline.member``)."""
    policy, baseline = QuantPolicy(), BASELINES[method]
    if baseline.dropout:
        model.load_state_dict(state)  # MC dropout runs the model's own weights, masks training

    def open_member(member_seed_k: int):
        return baseline.member(model, state, policy, setting, member_seed_k, device=device)

    seeds = [member_seed(seed, k) for k in range(members)]
    # storage is counted by the caller (Baseline.storage)
    return spine.evaluate(
        model,
        seeds,
        open_member,
        x,
        batch_size,
        device,
        calibration_x=calib_x,
        eval_mode=not baseline.dropout,
    )


def choose_setting(model, state, method, candidates, members, *, seed, data, batch_size, device):
    """The candidate with the lowest validation NLL of the ensemble; all validation NLLs.

    Validation is the data's selection split: the val split of a data file, the holdout of an
    image folder's training images (``lpe.data.inputs``)."""
    x, y = data.inputs(data.selection_split, batch_size)
    scores = {}
    for candidate in candidates:
        log_probs = ensemble(
            model,
            state,
            method,
            candidate,
            members,
            seed=seed,
            x=x,
            batch_size=batch_size,
            device=device,
        ).log_probs
        scores[candidate] = metrics.score(log_probs, y)["nll"]
        print(f"{method} {candidate}: validation NLL {scores[candidate]:.5f}")
    best = min(candidates, key=lambda s: (scores[s], s))
    return best, scores


def read_choice(path, method: str) -> float:
    """The setting a ``--select-out`` run chose, refusing one made for another method."""
    try:
        choice = json.loads(Path(path).read_text())
        setting = float(choice["setting"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ArtifactError(
            f"{path} is not a baseline choice file ({err}); rerun the selection"
        ) from err
    if choice.get("method") != (BY_NAME[method].choice_of or method):
        raise ValueError(f"{path} chose a setting for {choice.get('method')!r}, not {method!r}")
    check_candidates(method, [setting])
    return setting


BASELINES = baselines()  # Table 6's training-free ensembles (lpe.methods)
METHODS = tuple(BASELINES)


@dataclass(frozen=True, kw_only=True)
class BaselinesJob(Calibrated):
    """One training-free ensemble of Table 6: its setting chosen (or read), its test predictions
    per seed (see the module's docstring)."""

    checkpoint: str = setting(help="the trained model every member perturbs")
    method: str = setting(help="the training-free ensemble (lpe.methods)", choices=METHODS)
    # the rule passes the method's config list (its registry line's `candidates`) here
    candidates: tuple[float, ...] = setting(
        (),
        "the settings searched on validation (the method's config list: baselines.*): numbers, "
        "or INT-b format names for lpe-bsr's precisions (int6 int4)",
        config="job.candidates",
        from_config=lambda values: tuple(setting_value(v) for v in values or ()),
        parse=setting_value,
    )
    members: int = setting(help="members per ensemble")
    seeds: tuple[int, ...] = setting(help="ensemble seeds; the first one's members choose")
    out: tuple[str, ...] = setting((), "test predictions file per seed")
    select_out: str | None = setting(None, "write the chosen setting to this json")
    setting_file: str | None = setting(
        None, "a choice written by --select-out: use it", config="job.setting_file"
    )
    copy_choice_to: str | None = setting(None, "with --setting-file: record the choice used")
    choice_out: str | None = setting(
        None, "the choice's record: --select-out, or with --setting-file --copy-choice-to"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.members < 1:
            raise ValueError(f"--members must be >= 1, got {self.members}")
        if not self.setting_file:
            if BY_NAME[self.method].choice_of or self.copy_choice_to:
                raise ValueError(
                    f"--method {self.method} and --copy-choice-to need a --setting-file"
                )
            check_candidates(self.method, self.candidates)
        elif self.select_out:
            raise ValueError("--setting-file and --select-out exclude each other")
        if not self.out and not self.select_record:
            raise ValueError(
                "nothing to do: give --out (predictions) and/or --select-out (the choice)"
            )
        if self.out and len(self.out) != len(self.seeds):
            raise ValueError(f"--seeds and --out must pair up: got {self.seeds} and {self.out}")

    @property
    def select_record(self) -> str | None:
        """Where the choice made is written (``--select-out``, or ``--choice-out`` without a
        ``--setting-file``)."""
        return None if self.setting_file else self.select_out or self.choice_out

    @property
    def copy_record(self) -> str | None:
        """Where the choice used is recorded (``--copy-choice-to``, or ``--choice-out`` with a
        ``--setting-file``)."""
        return self.copy_choice_to or self.choice_out if self.setting_file else None


def run(job: BaselinesJob) -> None:
    """Choose (or read) the job's setting, then evaluate and write each seed's ensemble."""
    chosen = read_choice(job.setting_file, job.method) if job.setting_file else None
    device = job.start()
    state, info = load_checkpoint(job.checkpoint)
    data = job.open(info)
    model = info.build().to(device)
    if chosen is None:
        with autocast(device, job.dtype):
            chosen, validation = choose_setting(
                model,
                state,
                job.method,
                job.candidates,
                job.members,
                seed=job.seeds[0],
                data=data,
                batch_size=job.batch_size,
                device=device,
            )
        print(f"chosen on the validation split: {job.method} {chosen}")
        candidates = sorted(job.candidates)
        if at_an_end(chosen, candidates):
            print(
                f"WARNING: {job.method} {chosen} is at an end of its candidates "
                f"{candidates}: a better setting may lie beyond them; widen the "
                "list in the config's baselines section",
                file=sys.stderr,
            )
        if job.select_record:
            nll = {str(k): v for k, v in validation.items()}
            write_json(
                job.select_record,
                {
                    "method": job.method,
                    "setting": chosen,
                    "seed": job.seeds[0],
                    "members": job.members,
                    "validation_nll": nll,
                    "candidates": candidates,
                },
            )
    else:
        print(f"{job.method} {chosen}: chosen on the validation split ({job.setting_file})")
        if job.copy_record:
            write_json(
                job.copy_record,
                {"method": job.method, "setting": chosen, "chosen_by": job.setting_file},
            )
    if not job.out:
        return
    x, labels = data.inputs(job.split, job.batch_size)
    calib_x, calib_labels = (
        data.inputs(data.selection_split, job.batch_size) if job.calibrate else (None, None)
    )
    baseline = BASELINES[job.method]
    bits = baseline.storage(model, state, chosen, job.members)
    # the chosen ensemble, evaluated on the split (and the calibration split) per seed
    of_seed = functools.partial(
        ensemble,
        model,
        state,
        job.method,
        chosen,
        job.members,
        x=x,
        batch_size=job.batch_size,
        device=device,
        calib_x=calib_x,
    )
    for seed, out in zip(job.seeds, job.out, strict=True):
        with autocast(device, job.dtype):
            done = of_seed(seed=seed)
        precision = int(chosen) if baseline.rounded else 0  # 0: FP32
        record = {
            "method": job.method,
            "bits": precision,
            "seed": seed,
            "setting": np.asarray(chosen),
        }
        write_evaluated(
            out, done._replace(bits=bits), labels, info, record, calibration_labels=calib_labels
        )


def main(argv: list[str] | None = None) -> None:
    run(from_cli(BaselinesJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
