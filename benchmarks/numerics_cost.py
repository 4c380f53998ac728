"""What the pinned CPU numerics cost: the same stages under each pinning, back to back.

Runs ``lpe.stages.train`` (each model, a few epochs) and ``lpe.stages.predict`` (10 LPE-BSR members)
as the workflow runs them, one thread, in fresh processes, alternating three settings ``--repeats``
times, and reports the best wall time of each: the suite's pin (``lpe.core.numerics.PINNED``, MKL's
``AVX2,STRICT`` branch), the pin before it (MKL's ``COMPATIBLE,STRICT`` branch, vendor-independent
GEMMs at 1.5x the DAG's time) and native (``LPE_NATIVE_NUMERICS=1``: this CPU's own paths).
Usage: ``python benchmarks/numerics_cost.py [--models vit_mini_b ...] [--epochs 1] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit

from lpe.core.numerics import OPT_OUT, PINNED
from lpe.tools.fingerprint import cpu_name


def stage(args: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_mini_t", "vit_mini_s", "vit_mini_b",
                                                          "vit_mini_l"])  # fmt: skip
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in PINNED and k != OPT_OUT}
    old_pin = {**PINNED, "MKL_CBWR": "COMPATIBLE,STRICT"}
    modes = {
        f"pinned (MKL_CBWR={PINNED['MKL_CBWR']})": base,
        "old pin (MKL_CBWR=COMPATIBLE,STRICT)": {**base, OPT_OUT: "1", **old_pin},
        "native": {**base, OPT_OUT: "1"},
    }
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stage(["lpe.stages.data", "--dataset", "mnist1d", "--train", "12000", "--val", "2000",
               "--test", "6000", "--seed", "0", "--out", "d.npz"], base, work)  # fmt: skip
        for repeat in range(args.repeats):
            for index, (mode, env) in enumerate(modes.items()):
                for model in args.models:
                    ckpt = f"{model}-{index}-{repeat}.safetensors"
                    train = ["lpe.stages.train", "--data", "d.npz", "--model", model,
                             "--epochs", str(args.epochs), "--out", ckpt]  # fmt: skip
                    times.setdefault((mode, f"train {model}"), []).append(stage(train, env, work))
                members = f"m-{index}-{repeat}"
                gen = ["lpe.stages.generate", "--checkpoint", ckpt, "--method", "bsr",
                       "--format", "int4", "--members", "10", "--out", members]  # fmt: skip
                stage(gen, env, work)
                predict = ["lpe.stages.predict", "--checkpoint", ckpt, "--data", "d.npz",
                           "--members", members, "--out", "p.npz"]  # fmt: skip
                times.setdefault((mode, f"predict {args.models[-1]}"), []).append(
                    stage(predict, env, work)
                )
    names = list(modes)
    lines = [
        f"Best of {args.repeats} wall times (s), one thread, fresh process each (start-up "
        f"included): `lpe.stages.train` of each model for {args.epochs} epoch(s) on the default "
        f"MNIST-1D splits, `lpe.stages.predict` of 10 INT-4 LPE-BSR members of "
        f"{args.models[-1]} on the 6000 test points. CPU: {cpu_name()}, {os.cpu_count()} cores.",
        "",
        "| stage | " + " | ".join(names) + " | pinned / native | old pin / native |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for stage_name in dict.fromkeys(key for _, key in times):
        best = [min(times[(mode, stage_name)]) for mode in names]
        lines.append(f"| {stage_name} | " + " | ".join(f"{b:.1f}" for b in best)
                     + f" | {best[0] / best[2]:.2f} | {best[1] / best[2]:.2f} |")  # fmt: skip
    lines += ["", f"native = this CPU's own paths ({OPT_OUT}=1).", ""]
    emit("\n".join(lines), args.out, "Cost of the pinned CPU numerics",
         "python benchmarks/numerics_cost.py")  # fmt: skip


if __name__ == "__main__":
    main()
