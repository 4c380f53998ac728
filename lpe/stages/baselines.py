"""The ``baselines`` stage: training-free ensembles other than LPE-BSR (Table 6, claim 6).

Each perturbs one trained model and has one setting, chosen on the validation split (never the
test split) from the candidates given, by the NLL of the ensemble; LPE-BSR is one of them, so
that Table 6 fixes no method while tuning the others:

- ``bsr``: LPE-BSR members at INT-b, the candidates being bit widths; member k is the generate
  stage's member k of the same seed (``member_seed(seed, k)``, per-channel scales).
- ``matched``: Gaussian weight noise of LPE-BSR's per-weight variance ``s^2 f (1 - f)`` at the
  precision ``bsr`` chose (read from its choice file with ``--setting-file``): the same
  perturbation size as LPE-BSR, Gaussian instead of two-point.

- ``gaussian``: Gaussian weight noise on the tensors LPE-BSR quantizes (the same policy), with a
  standard deviation of ``scale x max|w|`` of each output channel, i.e. in the units of the INT-b
  grid's per-channel range (ASSUMED parameterisation; the paper's was not available). Member k
  draws from its own generator, ``member_seed(seed, k)``.
- ``dropout``: MC dropout at rate ``p`` on every ``nn.Dropout`` of the timm ViT except attention
  probabilities (timm's fused attention takes its dropout flag from the attention module, not
  the dropout module). Member k's masks come from torch's global generator seeded with
  ``member_seed(seed, k)`` inside ``fork_rng``.

Memory budget: an LPE-BSR member is its codes, scales and kept tensors (as the generate stage
stores it); a Gaussian-noise member is stored as FP32 weights (32 bits per parameter); MC
dropout members are masks drawn at run time from the one stored FP32 model, so the whole
ensemble costs one model.

Output: one predictions file (``lpe.stages.predict``) of the test split per ensemble seed, with the
chosen setting in ``setting``; the validation NLL of every candidate is printed to the log. The
choice is made once, with the first seed's members, and shared by every seed;
``--select-out CHOICE.json`` also writes it, and ``--setting-file CHOICE.json`` uses a choice
made before instead of choosing.

Usage: ``python -m lpe.stages.baselines --checkpoint CKPT --data DATA --method gaussian
--candidates 0.01 0.02 0.05 --members 10 --seeds 0 1 --out P0.npz P1.npz --select-out C.json``;
or ``--select-out C.json`` alone (only choose), then ``--setting-file C.json --seeds 1 --out
P1.npz``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lpe.cli.flags import (
    CALIBRATED_SETTINGS,
    DATA_SETTINGS,
    add_calibration_arguments,
    add_data_arguments,
    add_runtime_arguments,
    apply_settings,
    argument_value,
    check_calibration,
    open_stage_data,
)
from lpe.core import metrics
from lpe.core.artifacts import ArtifactError, write_json
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.core.selection import at_an_end
from lpe.data.datasets import SPLITS
from lpe.evaluation.ensemble import member_weights
from lpe.evaluation.prediction import Evaluated, predict_log_probs, timed_log_probs
from lpe.evaluation.predictions_file import write_evaluated
from lpe.formats.names import MAX_BITS, MIN_BITS
from lpe.formats.number_formats import int_format
from lpe.formats.policy import QuantPolicy
from lpe.members.files import member_seed, quantize
from lpe.models.checkpoints import load_checkpoint
from lpe.models.factory import count_params


def bits_problem(candidates: Sequence[float]) -> str | None:
    if all(float(b).is_integer() and MIN_BITS <= b <= MAX_BITS for b in candidates):
        return None
    return f"baselines.bits must be integers in {MIN_BITS}..{MAX_BITS}, got {list(candidates)}"


def rates_problem(candidates: Sequence[float]) -> str | None:
    if all(0 <= p < 1 for p in candidates):
        return None
    return f"baselines.dropout rates must be in [0, 1), got {list(candidates)}"


def scales_problem(candidates: Sequence[float]) -> str | None:
    if all(s >= 0 for s in candidates):
        return None
    return f"baselines.gaussian scales must be >= 0, got {list(candidates)}"


def check_candidates(method: str, candidates: Sequence[float]) -> None:
    if not candidates:
        raise ValueError(f"baselines.{method}: the search has no candidates")
    if problem := BASELINES[method].problem(candidates):
        raise ValueError(problem)


def channel_scales(fmt, tensor: torch.Tensor) -> torch.Tensor:
    """``fmt``'s per-output-channel scales of ``tensor``, shaped to broadcast against it."""
    return fmt.scales(tensor).reshape(-1, *[1] * (tensor.dim() - 1))


@torch.no_grad()
def gaussian_member(model, state, policy: QuantPolicy, scale: float, seed: int) -> None:
    """Write ``state`` plus Gaussian noise (std ``scale x`` channel absmax) into ``model``."""
    generator = torch.Generator().manual_seed(seed)
    target = model.state_dict(keep_vars=True)
    for name, tensor in state.items():
        noisy = tensor
        if policy.quantizes(name, tensor):
            # INT-2's scales (qmax 1) are the per-channel absmax
            absmax = channel_scales(int_format(2), tensor)
            noise = torch.randn(tensor.shape, generator=generator)
            noisy = tensor + scale * absmax * noise
        target[name].copy_(noisy)


@torch.no_grad()
def matched_member(model, state, policy: QuantPolicy, bits: int, seed: int) -> None:
    """Write ``state`` plus Gaussian noise of LPE-BSR's per-weight variance at INT-``bits``.

    BSR rounds ``w = s (c + f)`` (grid step ``s``, code ``c``, fraction ``f`` in [0, 1)) up with
    probability ``f``: an unbiased perturbation of variance ``s^2 f (1 - f)``. This member adds
    a Gaussian of exactly that variance, weight by weight, so that it differs from an LPE-BSR
    member only in the shape of the noise (Gaussian, not two-point on the grid).
    """
    generator = torch.Generator().manual_seed(seed)
    fmt = int_format(bits)
    target = model.state_dict(keep_vars=True)
    for name, tensor in state.items():
        noisy = tensor
        if policy.quantizes(name, tensor):
            step = channel_scales(fmt, tensor)
            u = tensor.float() / step
            f = u - u.floor()
            noise = torch.randn(tensor.shape, generator=generator)
            noisy = tensor + step * (f * (1 - f)).sqrt() * noise
        target[name].copy_(noisy)


# How each method's member ``seed`` runs: a context in which the model computes that member,
# giving the weights to run it with (None: the model's own, as the context left them).
@contextlib.contextmanager
def bsr_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    """The generate stage's member of this seed, run as every stage runs it."""
    yield member_weights(model, quantize(state, int_format(int(setting)), "bsr", seed, policy))


@contextlib.contextmanager
def gaussian_noise_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    gaussian_member(model, state, policy, setting, seed)  # a perturbed copy of the weights
    yield None


@contextlib.contextmanager
def matched_noise_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    matched_member(model, state, policy, int(setting), seed)
    yield None


@contextlib.contextmanager
def dropout_member(model, state, policy: QuantPolicy, setting, seed: int, *, device):
    """Masks from torch's global generator seeded with ``seed``, inside ``fork_rng``."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        set_dropout(model, setting)
        yield None


def set_dropout(model: torch.nn.Module, rate: float) -> None:
    """Rate ``rate`` on every dropout module but attention's, in train mode (the rest in eval)."""
    model.eval()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and not name.endswith("attn_drop"):
            module.p = rate
            module.train()


def ensemble(model, state, method, setting, members, *, seed, x, batch_size, device, calib_x=None):
    """The ``method`` ensemble at ``setting``, evaluated on ``x`` (and ``calib_x``, when given)."""
    policy, baseline = QuantPolicy(), BASELINES[method]
    out, calibration, seconds = [], [], []
    dropout = baseline.dropout
    if dropout:
        model.load_state_dict(state)  # MC dropout keeps its dropout modules training

    def evaluate(weights=None) -> None:
        lp, took = timed_log_probs(model, x, batch_size, device, not dropout, weights=weights)
        out.append(lp)
        seconds.append(took)
        if calib_x is not None:
            lp = predict_log_probs(model, calib_x, batch_size, device, not dropout, weights=weights)
            calibration.append(lp)

    for k in range(members):
        seeded = member_seed(seed, k)
        with baseline.member(model, state, policy, setting, seeded, device=device) as weights:
            evaluate(weights)
    bits = [0] * members  # the caller counts the storage (Baseline.storage)
    stacked = torch.stack(calibration) if calibration else None
    return Evaluated(torch.stack(out), bits, seconds, stacked)


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
    if choice.get("method") != (BASELINES[method].choice_of or method):
        raise ValueError(f"{path} chose a setting for {choice.get('method')!r}, not {method!r}")
    check_candidates(method, [setting])
    return setting


def rounded_bits(model, state, setting: float, members: int) -> list[int]:
    """An LPE-BSR member's codes, scales and kept tensors (an RTN member has its layout)."""
    return [quantize(state, int_format(int(setting)), "rtn").bits] * members


def fp32_bits(model, state, setting: float, members: int) -> list[int]:
    """A noisy member is a full FP32 model."""
    return [32 * count_params(model)] * members


def mask_bits(model, state, setting: float, members: int) -> list[int]:
    """MC dropout's members are masks of the one stored FP32 model."""
    return [32 * count_params(model)] + [0] * (members - 1)


@dataclass(frozen=True)
class Baseline:
    """One training-free ensemble of Table 6, by its name on the command line and in the rules.

    ``label``: the method its predictions files carry (lpe.methods; the score stage
    reads ``bsr`` as lpe-bsr); ``candidates``: the config list its setting is chosen from, or
    None when it takes ``choice_of``'s choice; ``problem``: what is wrong with settings;
    ``member``: the context a member runs in; ``storage``: each member's bits; ``rounded``:
    whether its setting is a bit width (the members' precision); ``dropout``: whether its
    members run with dropout in train mode.
    """

    label: str
    candidates: str | None
    problem: Callable[[Sequence[float]], str | None]
    member: Callable
    storage: Callable[..., list[int]]
    rounded: bool = False
    dropout: bool = False
    choice_of: str | None = None


BASELINES = {
    "gaussian": Baseline("gaussian-noise", "baselines.gaussian_scales", scales_problem,
                         gaussian_noise_member, fp32_bits),
    "dropout": Baseline("mc-dropout", "baselines.dropout_rates", rates_problem, dropout_member,
                        mask_bits, dropout=True),
    "bsr": Baseline("bsr", "baselines.bits", bits_problem, bsr_member, rounded_bits,
                    rounded=True),
    # matched noise takes LPE-BSR's chosen precision (--setting-file): no candidates of its own
    "matched": Baseline("gaussian-matched", None, bits_problem, matched_noise_member, fp32_bits,
                        choice_of="bsr"),
}  # fmt: skip
METHODS = tuple(BASELINES)
# Each method's candidates from the config's baselines section (lpe.core.settings)
CANDIDATE_SETTINGS = {name: b.candidates for name, b in BASELINES.items() if b.candidates}


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
    add_calibration_arguments(parser, holdout=False)  # --holdout: the data flags'
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
        if BASELINES[args.method].choice_of or args.copy_choice_to:
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
        run = {"method": baseline.label, "bits": precision, "seed": seed,
               "setting": np.asarray(setting)}  # fmt: skip
        write_evaluated(
            out, done._replace(bits=bits), labels, info, run, calibration_labels=calib_labels
        )


if __name__ == "__main__":
    main()
