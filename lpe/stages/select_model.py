"""Which model the fine-tuning experiments use: the rule of ``bma.model``, measured on validation.

The rule (stated in the config schema): among the Table 1 models, the one whose LPE-BSR ensemble
(``--members`` members in ``--format``) lowers the validation NLL most below its own FP32
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

Usage: ``python -m lpe.stages.select_model --checkpoints CKPT ... --data DATA --format int5
--members 10 --seeds 0 1 2 --configured vit_mini_t --out results/mini/bma/model_choice.md``
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass

from lpe.cli.jobs import from_cli
from lpe.core import metrics
from lpe.core.artifacts import write_text
from lpe.core.jobs import setting
from lpe.core.runtime import Device
from lpe.core.selection import (
    DISAGREEMENT,
    NOISE_SE,
    WITHIN_TIE_BAND,
    band,
    joint_band,
)
from lpe.data.inputs import StageData
from lpe.evaluation import spine
from lpe.members.files import member_seed, quantize
from lpe.members.sets import MemberFormat
from lpe.models.checkpoints import checkpoint_info, load_checkpoint
from lpe.models.factory import count_params


def validation_gains(path, job: SelectModelJob, device) -> dict:
    """FP32 and LPE-BSR validation NLL of one checkpoint, per ensemble seed, and the gains."""
    state, info = load_checkpoint(path)
    data = job.open(info)
    x, y = data.inputs(data.selection_split, job.batch_size)
    model = info.build().to(device)
    model.load_state_dict(state)
    open_member = spine.open_member(model)  # the forward every stage runs members with
    fp32 = spine.evaluate(model, [None], open_member, x, job.batch_size, device).log_probs
    fp32 = metrics.score(fp32, y)
    fmt, policy, lpe = job.number_format(), job.policy(), []
    for seed in job.seeds:
        members = (
            quantize(state, fmt, "bsr", member_seed(seed, k), policy) for k in range(job.members)
        )
        log_probs = spine.evaluate(model, members, open_member, x, job.batch_size, device)
        lpe.append(metrics.score(log_probs.log_probs, y)["nll"])
    gains = [fp32["nll"] - nll for nll in lpe]
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    return {
        "model": info.model,
        "params": count_params(model),
        "fp32": fp32["nll"],
        "lpe": statistics.fmean(lpe),
        "gains": gains,
        "gain": statistics.fmean(gains),
        "band": band(spread, len(gains)),
    }


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


@dataclass(frozen=True, kw_only=True)
class SelectModelJob(MemberFormat, StageData, Device):
    """The rule of ``bma.model`` measured on the Table 1 checkpoints (see the module)."""

    checkpoints: tuple[str, ...] = setting(help="the Table 1 models")
    members: int = setting(10, "LPE-BSR members per seed", config="lpe.ensemble_size")
    seeds: tuple[int, ...] = setting(
        (0, 1, 2), "ensemble seeds; the gains are averaged over them", config="lpe.seeds"
    )
    batch_size: int = setting(1000, "examples per forward pass", config="predict.batch_size")
    configured: str = setting("vit_mini_s", "the config's bma.model", config="bma.model")
    out: str = setting(help="the Markdown record of the choice")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.checkpoints:
            raise ValueError("no checkpoints to choose among")
        if self.members < 2:
            raise ValueError(f"members must be >= 2 (an ensemble), got {self.members}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct and >= 0, got {list(self.seeds)}")


def run(job: SelectModelJob) -> str:
    """Measure the rule, write its record; the rule's choice."""
    device = job.start()
    models = [checkpoint_info(p).model for p in job.checkpoints]  # headers only: fails early
    if job.configured not in models:
        raise ValueError(
            f"configured {job.configured!r} is none of the checkpoints' models "
            f"({', '.join(models)})"
        )
    rows = [validation_gains(p, job, device) for p in job.checkpoints]
    best, tied = choose(rows)
    seeds = ", ".join(str(s) for s in job.seeds)
    lines = [
        "# The fine-tuning model (bma.model), chosen on the validation split",
        "",
        f"Generated by `python -m lpe.stages.select_model`; do not edit. Rule: the model whose "
        "LPE-BSR "
        f"ensemble (M = {job.members}, {job.number_format().name.upper()}) lowers the validation "
        f"NLL most below its FP32 model's, averaged over the ensemble seeds {seeds}. Models whose "
        f"mean gain is within noise of the largest ({NOISE_SE:g} standard errors over the seeds, "
        "in quadrature for the difference) are tied, and a tie goes to the fewest parameters.",
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
        ),
        "",
        choice_line(rows, best, tied, job.configured),
    ]
    write_text(job.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    if job.configured != best:
        print(f"WARNING: {lines[-1]}", file=sys.stderr)
    return best


def main(argv: list[str] | None = None) -> None:
    run(from_cli(SelectModelJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
