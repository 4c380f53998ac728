"""What the pinned CPU numerics cost: the same stages, pinned to AVX2 and native, back to back.

Runs ``lpe.train`` (one model, a few epochs) and ``lpe.predict`` (10 LPE-BSR members) as the
workflow runs them, one thread, in fresh processes, alternating pinned and native
(``LPE_NATIVE_NUMERICS=1``) ``--repeats`` times, and reports the best wall time of each.
Usage: ``python benchmarks/numerics_cost.py [--model vit_mini_b] [--epochs 2] [--out FILE]``.
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

from lpe.numerics import OPT_OUT, PINNED


def stage(args: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_mini_b")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in PINNED and k != OPT_OUT}
    modes = {"pinned (AVX2)": base, "native": {**base, OPT_OUT: "1"}}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stage(["lpe.data", "--dataset", "mnist1d", "--train", "12000", "--val", "2000",
               "--test", "6000", "--seed", "0", "--out", "d.npz"], base, work)  # fmt: skip
        for repeat in range(args.repeats):
            for mode, env in modes.items():
                ckpt, members = f"{mode[:6]}{repeat}.safetensors", f"m-{mode[:6]}{repeat}"
                train = ["lpe.train", "--data", "d.npz", "--model", args.model,
                         "--epochs", str(args.epochs), "--out", ckpt]  # fmt: skip
                times.setdefault((mode, "train"), []).append(stage(train, env, work))
                gen = ["lpe.generate", "--checkpoint", ckpt, "--method", "bsr", "--bits", "4",
                       "--members", "10", "--out", members]  # fmt: skip
                stage(gen, env, work)
                predict = ["lpe.predict", "--checkpoint", ckpt, "--data", "d.npz",
                           "--members", members, "--out", "p.npz"]  # fmt: skip
                times.setdefault((mode, "predict"), []).append(stage(predict, env, work))
    lines = [
        f"Best of {args.repeats} wall times (s), one thread, fresh process each (start-up "
        f"included): `lpe.train` of {args.model} for {args.epochs} epochs on the default "
        "MNIST-1D splits, `lpe.predict` of 10 INT-4 LPE-BSR members on the 6000 test points.",
        "",
        "| stage | pinned (AVX2) | native | pinned / native |",
        "|---|---|---|---|",
    ]
    for name in ("train", "predict"):
        pinned, native = min(times[("pinned (AVX2)", name)]), min(times[("native", name)])
        lines.append(f"| {name} | {pinned:.1f} | {native:.1f} | {pinned / native:.2f} |")
    lines += ["", f"{os.cpu_count()} cores; native = this CPU's own paths ({OPT_OUT}=1).", ""]
    emit("\n".join(lines), args.out, "Cost of the pinned CPU numerics",
         "python benchmarks/numerics_cost.py")  # fmt: skip


if __name__ == "__main__":
    main()
