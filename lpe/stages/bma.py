"""The ``bma`` stage: predictions of Bayesian model averaging with SWAG or IVON posterior draws.

Each draw is a flat FP32 weight vector written into the one model instance
(``torch.nn.utils.vector_to_parameters``), evaluated, then replaced by the next: no model copies.
Draw ``k`` of ensemble seed ``s`` uses its own generator, seeded by ``member_seed(s, k)``, so
member ``k`` is the same whatever the ensemble size. A draw is stored as FP32, so each member
costs 32 bits per parameter in the memory budget.

Usage: ``python -m lpe.stages.bma --checkpoint SOLUTION --posterior POSTERIOR --data DATA --members
20 --seeds 0 1 --out PREDS0.npz PREDS1.npz`` (one ensemble and one predictions file per seed).
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from lpe.cli.flags import (
    DATA_SETTINGS,
    PREDICT_SETTINGS,
    add_data_arguments,
    add_runtime_arguments,
    open_stage_data,
)
from lpe.cli.jobs import apply_settings
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.data.datasets import SPLITS
from lpe.evaluation.prediction import predict_log_probs
from lpe.evaluation.predictions_file import write_predictions
from lpe.models.factory import count_params
from lpe.training.finetuning import draw, load_solution


@torch.inference_mode()
def predict_draws(model, posterior, members, seed, x, *, batch_size, device, swag_scale=0.5):
    """``(M, N, C)`` log-probs of ``members`` posterior draws, each written into ``model``."""
    out = []
    for k in tqdm(range(members), desc="bma", mininterval=5):
        weights = draw(posterior, seed, k, swag_scale).to(device)
        torch.nn.utils.vector_to_parameters(weights, model.parameters())
        out.append(predict_log_probs(model, x, batch_size, device))
    return torch.stack(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the fine-tuned solution")
    parser.add_argument(
        "--posterior", required=True, help="its posterior file (lpe.stages.finetune)"
    )
    add_data_arguments(parser)
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument(
        "--seeds", "--seed", type=int, nargs="+", required=True, help="one ensemble per seed"
    )
    parser.add_argument("--swag-scale", type=float, default=0.5)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--out", nargs="+", required=True, help="predictions file per seed")
    add_runtime_arguments(parser)
    apply_settings(parser, argv, {**DATA_SETTINGS, **PREDICT_SETTINGS})
    args = parser.parse_args(argv)
    if args.members < 1:
        parser.error(f"--members must be >= 1, got {args.members}")
    if len(args.seeds) != len(args.out):
        parser.error(f"--seeds and --out must pair up: got {args.seeds} and {args.out}")
    set_threads(args.threads)
    device = resolve_device(args.device)
    state, info, posterior = load_solution(args.checkpoint, args.posterior)
    model = info.build().to(device)
    model.load_state_dict(state)  # buffers, if any; the parameters are replaced by each draw
    x, labels = open_stage_data(args, info).inputs(args.split, args.batch_size)
    bits = [32 * count_params(model)] * args.members
    for seed, out in zip(args.seeds, args.out, strict=True):
        with autocast(device, args.dtype):
            log_probs = predict_draws(
                model,
                posterior,
                args.members,
                seed,
                x,
                batch_size=args.batch_size,
                device=device,
                swag_scale=args.swag_scale,
            )
        run = {"method": f"{info.optimizer}-bma", "bits": 0, "seed": seed}
        write_predictions(out, log_probs, labels, bits, info, run=run)


if __name__ == "__main__":
    main()
