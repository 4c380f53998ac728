"""Which model the fine-tuning experiments use: the rule of ``bma.model``, measured on validation.

The rule (stated in the config schema): among the Table 1 models, the one whose LPE-BSR ensemble
(``--members`` members at INT-``--bits``) lowers the validation NLL most below its own FP32
model's, in absolute NLL, averaged over the ensemble seeds ``--seeds``. A gain measured with one
ensemble seed is mostly noise here: on the mini models, one model's gain ranged from 0.0018 to
0.0057 over three seeds, and the best model changed with the seed. So each mean gain carries its
noise band (``lpe.core.selection``: 2 standard errors over the seeds), models whose mean is within
noise of the largest are tied, and a tie goes to the model with the fewest parameters: the
measurement cannot tell them apart, and the cheaper one leaves the budget to the rest.

Fine-tuning experiments (Figures 2-6, 8, 9, Tables 5, claims 4, 5) ask whether LPE-BSR adds to a
solution; around a model where it cannot beat the solution itself they would measure the model,
not the method. The rule reads only the selection split (validation), never the test split.

The configured ``bma.model`` is checked against the rule, and the DAG always goes on with the
configured model (the choice stays in the config, so that the DAG is known before any job runs).
When the rule chooses another model (another CPU's rounding can swap two tied models), the choice
file says so in one bold line with both gains and whether the configured model is within the
rule's tie band of the largest gain (``choice_line``); the claims report repeats that line, and
``lpe.tools.compare`` accepts such a move within the tie band and fails one outside it.

Usage: ``python -m lpe.stages.select_model --checkpoints CKPT ... --data DATA --bits 5 --members 10
--seeds 0 1 2 --configured vit_mini_t --out results/mini/bma/model_choice.md``
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from lpe.cli.flags import (
    DATA_SETTINGS,
    QUANT_SETTINGS,
    add_data_arguments,
    add_member_arguments,
    add_runtime_arguments,
    member_format,
    open_stage_data,
)
from lpe.cli.jobs import apply_settings
from lpe.core import metrics
from lpe.core.artifacts import write_text
from lpe.core.runtime import resolve_device, set_threads
from lpe.core.selection import (
    DISAGREEMENT,
    NOISE_SE,
    WITHIN_TIE_BAND,
    band,
    joint_band,
)
from lpe.evaluation.ensemble import member_weights
from lpe.evaluation.prediction import predict_log_probs
from lpe.members.files import member_seed, quantize
from lpe.models.checkpoints import checkpoint_info, load_checkpoint
from lpe.models.factory import count_params


def validation_gains(path, args, fmt, policy, device) -> dict:
    """FP32 and LPE-BSR validation NLL of one checkpoint, per ensemble seed, and the gains."""
    state, info = load_checkpoint(path)
    data = open_stage_data(args, info)
    x, y = data.inputs(data.selection_split, args.batch_size)
    model = info.build().to(device)
    model.load_state_dict(state)
    fp32 = metrics.score(predict_log_probs(model, x, args.batch_size, device).unsqueeze(0), y)
    lpe = []
    for seed in args.seeds:
        members = []
        for k in range(args.members):
            member = quantize(state, fmt, "bsr", member_seed(seed, k), policy)
            weights = member_weights(model, member)  # the forward every stage runs members with
            members.append(predict_log_probs(model, x, args.batch_size, device, weights=weights))
        lpe.append(metrics.score(torch.stack(members), y)["nll"])
    gains = [fp32["nll"] - nll for nll in lpe]
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    return {"model": info.model, "params": count_params(model), "fp32": fp32["nll"],
            "lpe": statistics.fmean(lpe), "gains": gains, "gain": statistics.fmean(gains),
            "band": band(spread, len(gains))}  # fmt: skip


def choose(rows: list[dict]) -> tuple[str, list[str]]:
    """The rule's choice and the models tied with the largest mean gain (within noise of it)."""
    best = max(rows, key=lambda r: r["gain"])
    tied = [r for r in rows if best["gain"] - r["gain"] <= joint_band(best["band"], r["band"])]
    chosen = min(tied, key=lambda r: (r["params"], -r["gain"]))
    return chosen["model"], [r["model"] for r in tied]


def choice_line(rows: list[dict], best: str, tied: list[str], configured: str) -> str:
    """The line that says whether the configured model is the rule's choice (see the module)."""
    if configured == best:
        return f"Configured bma.model: {configured}, the rule's choice."
    by_model = {r["model"]: r for r in rows}
    chosen, mine = by_model[best], by_model[configured]
    within = WITHIN_TIE_BAND if configured in tied else "outside the rule's tie band"
    return (
        f"{DISAGREEMENT}{best} (gain {chosen['gain']:+.5f} ± {chosen['band']:.5f}), not the "
        f"configured {configured} (gain {mine['gain']:+.5f} ± {mine['band']:.5f}), {within} of "
        f"the largest gain; the DAG goes on with {configured}.**"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, help="the Table 1 models")
    add_data_arguments(parser)
    add_member_arguments(parser)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="ensemble seeds; the gains are averaged over them")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--configured", required=True, help="the config's bma.model")
    parser.add_argument("--out", required=True, help="the Markdown record of the choice")
    add_runtime_arguments(parser)
    apply_settings(parser, argv, {**DATA_SETTINGS, **QUANT_SETTINGS})
    args = parser.parse_args(argv)
    if args.members < 2:
        parser.error(f"--members must be >= 2 (an ensemble), got {args.members}")
    set_threads(args.threads)
    device = resolve_device(args.device)
    fmt, policy = member_format(args)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds must be distinct and >= 0, got {args.seeds}")
    models = [checkpoint_info(p).model for p in args.checkpoints]  # headers only: fails early
    if args.configured not in models:
        parser.error(f"--configured {args.configured!r} is none of the checkpoints' models "
                     f"({', '.join(models)})")  # fmt: skip
    rows = [validation_gains(p, args, fmt, policy, device) for p in args.checkpoints]
    best, tied = choose(rows)
    seeds = ", ".join(str(s) for s in args.seeds)
    lines = [
        "# The fine-tuning model (bma.model), chosen on the validation split",
        "",
        f"Generated by `python -m lpe.stages.select_model`; do not edit. Rule: the model whose "
        "LPE-BSR "
        f"ensemble (M = {args.members}, {fmt.name.upper()}) lowers the validation NLL most below "
        f"its FP32 model's, averaged over the ensemble seeds {seeds}. Models whose mean gain is "
        f"within noise of the largest ({NOISE_SE:g} standard errors over the seeds, in quadrature "
        "for the difference) are tied, and a tie goes to the fewest parameters.",
        "",
        "| model | parameters | FP32 val NLL | LPE-BSR val NLL (mean) | gain per seed "
        "| mean gain ± band | tied with the largest | the rule's choice |",
        "|---|---:|---:|---:|---|---:|---|---|",
        *(
            f"| {r['model']} | {r['params']:,} | {r['fp32']:.5f} | {r['lpe']:.5f} "
            f"| {' '.join(f'{g:+.5f}' for g in r['gains'])} "
            f"| {r['gain']:+.5f} ± {r['band']:.5f} | {'yes' if r['model'] in tied else 'no'} "
            f"| {'yes' if r['model'] == best else 'no'} |"
            for r in rows
        ),  # fmt: skip
        "",
        choice_line(rows, best, tied, args.configured),
    ]
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.configured != best:
        print(f"WARNING: {lines[-1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
