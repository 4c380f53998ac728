"""The ``bma`` stage: predictions of Bayesian model averaging with a posterior method's draws
(SWAG's or IVON's, or any registered posterior method's: ``lpe.methods``).

Each draw is a flat FP32 weight vector that the one model instance runs with (the evaluation
spine, ``lpe.evaluation.spine.open_vector``: views of the vector as the model's parameters), drawn
when it is evaluated and freed after: no model copies.
Draw ``k`` of ensemble seed ``s`` uses its own generator, seeded by ``member_seed(s, k)``, so
member ``k`` is the same whatever the ensemble size. A draw is stored as FP32, so each member
costs 32 bits per parameter in the memory budget.

Usage: ``python -m lpe.stages.bma --checkpoint SOLUTION --posterior POSTERIOR --data DATA --members
20 --seeds 0 1 --out PREDS0.npz PREDS1.npz`` (one ensemble and one predictions file per seed).
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from lpe.cli.jobs import from_cli
from lpe.core.jobs import setting
from lpe.core.runtime import autocast
from lpe.evaluation import spine
from lpe.evaluation.prediction import Evaluation
from lpe.evaluation.predictions_file import write_predictions
from lpe.methods import bma_method, load_all
from lpe.models.factory import count_params
from lpe.training.finetuning import draw, load_solution


def predict_draws(model, posterior, members, seed, x, *, batch_size, device, swag_scale=0.5):
    """``(M, N, C)`` log-probs of ``members`` posterior draws, each drawn when it is evaluated."""
    draws = (draw(posterior, seed, k, swag_scale) for k in range(members))
    draws = tqdm(draws, total=members, desc="bma", mininterval=5)
    open_draw = spine.open_vector(model, device)
    return spine.evaluate(model, draws, open_draw, x, batch_size, device).log_probs


@dataclass(frozen=True, kw_only=True)
class BmaJob(Evaluation):
    """One BMA ensemble per seed of one fine-tuned solution's posterior."""

    checkpoint: str = setting(help="the fine-tuned solution")
    posterior: str = setting(help="its posterior file (lpe.stages.finetune)")
    members: int = setting(20, "posterior draws per ensemble", config="bma.ensemble_size")
    seeds: tuple[int, ...] = setting((0, 1, 2), "one ensemble per seed", config="bma.seeds")
    swag_scale: float = setting(0.5, "covariance scale of SWAG's draws", config="bma.swag.scale")
    out: tuple[str, ...] = setting(help="predictions file per seed")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        if not self.seeds or len(self.seeds) != len(self.out):
            raise ValueError(f"seeds and out must pair up: got {self.seeds} and {self.out}")


def run(job: BmaJob) -> None:
    """Draw, evaluate and write each of the job's ensembles."""
    load_all()  # the posterior file's type registers with its method (lpe.methods)
    device = job.start()
    state, info, posterior = load_solution(job.checkpoint, job.posterior)
    model = info.build().to(device)
    model.load_state_dict(state)  # buffers, if any; each draw stands in for the parameters
    x, labels = job.inputs(info)
    bits = [32 * count_params(model)] * job.members
    for seed, out in zip(job.seeds, job.out, strict=True):
        with autocast(device, job.dtype):
            log_probs = predict_draws(
                model,
                posterior,
                job.members,
                seed,
                x,
                batch_size=job.batch_size,
                device=device,
                swag_scale=job.swag_scale,
            )
        run = {"method": bma_method(info.optimizer), "bits": 0, "seed": seed}
        write_predictions(out, log_probs, labels, bits, info, run=run)


def main(argv: list[str] | None = None) -> None:
    run(from_cli(BmaJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
