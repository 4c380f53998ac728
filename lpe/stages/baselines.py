"""The ``baselines`` stage: training-free ensembles other than LPE-BSR (Table 6, claim 6).

Each perturbs one trained model and has one setting, chosen on the validation split (never the
test split) from the candidates given, by the NLL of the ensemble; LPE-BSR is one of them, so
that Table 6 fixes no method while tuning the others:

- ``lpe-bsr``, ``gaussian-noise``, ``gaussian-matched``, ``mc-dropout``: the registry's methods
  whose module has a ``BASELINE`` (``lpe.methods``; each module says how its members are made,
  how they are stored, and which config list its setting is chosen from). ``gaussian-matched``
  takes the precision ``lpe-bsr`` chose (its choice file, ``--setting-file``).

Output: one predictions file (``lpe.stages.predict``) of the test split per ensemble seed, with the
chosen setting in ``setting``; the validation NLL of every candidate is printed to the log. The
choice is made once, with the first seed's members, and shared by every seed;
``--select-out CHOICE.json`` also writes it, and ``--setting-file CHOICE.json`` uses a choice
made before instead of choosing.

Usage: ``python -m lpe.stages.baselines --checkpoint CKPT --data DATA --method gaussian-noise
--candidates 0.01 0.02 0.05 --members 10 --seeds 0 1 --out P0.npz P1.npz --select-out C.json``;
or ``--select-out C.json`` alone (only choose), then ``--setting-file C.json --seeds 1 --out
P1.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lpe.cli.flags import (
    CALIBRATED_SETTINGS,
    DATA_SETTINGS,
    add_calibration_arguments,
    add_data_arguments,
    add_runtime_arguments,
    check_calibration,
    open_stage_data,
)
from lpe.cli.jobs import apply_settings, argument_value
from lpe.core import metrics
from lpe.core.artifacts import ArtifactError, write_json
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.core.selection import at_an_end
from lpe.data.datasets import SPLITS
from lpe.evaluation import spine
from lpe.evaluation.predictions_file import write_evaluated
from lpe.formats.policy import QuantPolicy
from lpe.members.files import member_seed
from lpe.methods import BY_NAME, baselines, table6
from lpe.models.checkpoints import load_checkpoint


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
    return spine.evaluate(model, seeds, open_member, x, batch_size, device,
                          calibration_x=calib_x, eval_mode=not baseline.dropout)  # fmt: skip


def choose_setting(model, state, method, candidates, members, *, seed, data, batch_size, device):
    """The candidate with the lowest validation NLL of the ensemble; all validation NLLs.

    Validation is the data's selection split: the val split of a data file, the holdout of an
    image folder's training images (``lpe.data.inputs``)."""
    x, y = data.inputs(data.selection_split, batch_size)
    scores = {}
    for setting in candidates:
        log_probs = ensemble(
            model,
            state,
            method,
            setting,
            members,
            seed=seed,
            x=x,
            batch_size=batch_size,
            device=device,
        ).log_probs
        scores[setting] = metrics.score(log_probs, y)["nll"]
        print(f"{method} {setting}: validation NLL {scores[setting]:.5f}")
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
# Each method's candidates from the config's baselines section (lpe.core.settings)
CANDIDATE_SETTINGS = {s.name: s.candidates for s in table6() if s.candidates}


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, float | None]:
    """The stage's arguments, checked, and the setting read from --setting-file (or None)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    add_data_arguments(parser)
    parser.add_argument("--split", default="test", choices=SPLITS, help="the evaluation split")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--candidates", type=float, nargs="*", default=[])
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument(
        "--seeds", "--seed", type=int, nargs="+", required=True,
        help="ensemble seeds; the first one's members choose the setting",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--out", nargs="*", default=[], help="test predictions file per seed")
    parser.add_argument("--select-out", help="write the chosen setting to this json")
    parser.add_argument("--setting-file", help="a choice written by --select-out: use it")
    parser.add_argument("--copy-choice-to", help="with --setting-file: record the choice used")
    parser.add_argument(
        "--choice-out",
        help="the choice's record: --select-out, or with --setting-file --copy-choice-to",
    )
    add_calibration_arguments(parser)
    add_runtime_arguments(parser)
    candidates = CANDIDATE_SETTINGS.get(argument_value(argv, "--method"))
    apply_settings(parser, argv, {
        **DATA_SETTINGS, **CALIBRATED_SETTINGS, "job.setting_file": "setting_file",
        **({candidates: "candidates"} if candidates else {}),
    })  # fmt: skip
    args = parser.parse_args(argv)
    if args.choice_out:
        if args.setting_file:
            args.copy_choice_to = args.choice_out
        else:
            args.select_out = args.choice_out
    check_calibration(parser, args)
    chosen = read_choice(args.setting_file, args.method) if args.setting_file else None
    if chosen is None:
        if BY_NAME[args.method].choice_of or args.copy_choice_to:
            parser.error(f"--method {args.method} and --copy-choice-to need a --setting-file")
        check_candidates(args.method, args.candidates)
    elif args.select_out:
        parser.error("--setting-file and --select-out exclude each other")
    if not args.out and not args.select_out:
        parser.error("nothing to do: give --out (predictions) and/or --select-out (the choice)")
    if args.out and len(args.out) != len(args.seeds):
        parser.error(f"--seeds and --out must pair up: got {args.seeds} and {args.out}")
    if args.members < 1:
        parser.error(f"--members must be >= 1, got {args.members}")
    return args, chosen


def main(argv: list[str] | None = None) -> None:
    args, chosen = parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    state, info = load_checkpoint(args.checkpoint)
    data = open_stage_data(args, info)
    model = info.build().to(device)
    if chosen is None:
        with autocast(device, args.dtype):
            setting, validation = choose_setting(model, state, args.method, args.candidates,
                                                 args.members, seed=args.seeds[0], data=data,
                                                 batch_size=args.batch_size,
                                                 device=device)  # fmt: skip
        print(f"chosen on the validation split: {args.method} {setting}")
        candidates = sorted(args.candidates)
        if at_an_end(setting, candidates):
            print(f"WARNING: {args.method} {setting} is at an end of its candidates "
                  f"{candidates}: a better setting may lie beyond them; widen the "
                  "list in the config's baselines section", file=sys.stderr)  # fmt: skip
        if args.select_out:
            nll = {str(k): v for k, v in validation.items()}
            write_json(args.select_out, {
                "method": args.method, "setting": setting, "seed": args.seeds[0],
                "members": args.members, "validation_nll": nll,
                "candidates": candidates,
            })  # fmt: skip
    else:
        setting = chosen
        print(f"{args.method} {setting}: chosen on the validation split ({args.setting_file})")
        if args.copy_choice_to:
            write_json(args.copy_choice_to, {"method": args.method, "setting": setting,
                                             "chosen_by": args.setting_file})  # fmt: skip
    if not args.out:
        return
    x, labels = data.inputs(args.split, args.batch_size)
    calib_x, calib_labels = (
        data.inputs(data.selection_split, args.batch_size) if args.calibrate else (None, None)
    )
    baseline = BASELINES[args.method]
    bits = baseline.storage(model, state, setting, args.members)
    for seed, out in zip(args.seeds, args.out, strict=True):
        with autocast(device, args.dtype):
            done = ensemble(model, state, args.method, setting, args.members, seed=seed, x=x,
                            batch_size=args.batch_size, device=device, calib_x=calib_x)  # fmt: skip
        precision = int(setting) if baseline.rounded else 0  # 0: FP32
        run = {"method": args.method, "bits": precision, "seed": seed,
               "setting": np.asarray(setting)}  # fmt: skip
        write_evaluated(
            out, done._replace(bits=bits), labels, info, run, calibration_labels=calib_labels
        )


if __name__ == "__main__":
    main()
