"""The mini profile's training regime, chosen by measurement: sizes x epochs x learning rate.

Trains each candidate ``shape:epochs:lr`` (shape = width x depth x heads of the mini ViT) on the
mini profile's MNIST-1D file with the train stage's own recipe (AdamW, warmup then cosine), and
prints its parameters, wall time, validation-NLL curve, the convergence gate (relative validation
NLL improvement over the last 20% of epochs) and the final validation and test NLL / error.
docs/experiments.md quotes this table; the choice in config/mini.yaml is made on the
validation columns (the test columns are printed for the record, not used to choose).

A shape may also be a registered model's name (``vit_mini_l:24:0.0007``), a fourth field is
the training seed (default 0) and a fifth the weight decay (default 0.05). The gate passes when
the gain is below 1% and the last epoch's validation NLL is at most 5% above the best, both on
the curve smoothed as ``lpe.models.checkpoints`` smooths it.

Usage: ``python benchmarks/mini_regime.py --data work/mini/data/mnist1d.npz
24x2x2:30:0.003 96x6x4:16:0.001 vit_mini_l:24:0.0007:1 ... [--jobs 2] [--out FILE]``
"""

from __future__ import annotations

import argparse
import functools
import io
import time
from concurrent.futures import ProcessPoolExecutor

from common import emit


def run(spec: str, data: str) -> dict:
    from lpe.core.numerics import pin_cpu_numerics

    pin_cpu_numerics()  # the stages' CPU paths (set by a stage's entry point, not by the library)
    import torch

    from lpe.data.datasets import load_splits
    from lpe.models import factory as models
    from lpe.models.checkpoints import convergence_gain, rise_after_best
    from lpe.training.loop import evaluate
    from lpe.training.pretraining import TrainConfig, train

    torch.set_num_threads(1)
    shape, epochs, lr, *rest = spec.split(":")
    seed, weight_decay = (rest + ["0", "0.05"][len(rest) :])[:2]
    if shape in models.MODELS:  # a registered model by name
        name = shape
    else:
        width, depth, heads = (int(v) for v in shape.split("x"))
        name = f"candidate_{shape}"
        models.MODELS[name] = functools.partial(models._mini_vit, width, depth, heads)
    splits = load_splits(data)
    cfg = TrainConfig(epochs=int(epochs), lr=float(lr), batch_size=128,
                      weight_decay=float(weight_decay), seed=int(seed))  # fmt: skip
    start = time.perf_counter()
    model, summary, _ = train(name, splits, cfg, torch.device("cpu"), log=io.StringIO())
    seconds = time.perf_counter() - start
    test = evaluate(model, splits, "test", torch.device("cpu"))
    curve = summary["val_nll_curve"]
    return {
        "spec": spec,
        "params": summary["params"],
        "seconds": seconds,
        "curve": curve,
        "gate": convergence_gain(curve),
        "rise": rise_after_best(curve),
        "val": summary["val"],
        "test": test,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", help="WIDTHxDEPTHxHEADS:EPOCHS:LR")
    parser.add_argument("--data", default="work/mini/data/mnist1d.npz")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(functools.partial(run, data=args.data), args.specs))
    lines = [
        "One process per run, 1 thread each (wall time on this machine's cores).\n",
        "| shape:epochs:lr[:seed] | params | wall (s) | val NLL per epoch | gain (last 20%) "
        "| last vs best | val NLL | val ERR | test NLL | test ERR |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        curve = " ".join(f"{v:.3f}" for v in r["curve"])
        lines.append(
            f"| {r['spec']} | {r['params']:,} | {r['seconds']:.0f} | {curve} "
            f"| {100 * r['gate']:.2f}% | {100 * r['rise']:+.2f}% "
            f"| {r['val']['nll']:.4f} | {r['val']['err']:.2f}% "
            f"| {r['test']['nll']:.4f} | {r['test']['err']:.2f}% |"
        )
    emit("\n".join(lines) + "\n", args.out, "Mini training regime", "benchmarks/mini_regime.py")


if __name__ == "__main__":
    main()
