"""The paper profile's GPU checks, in one run on a CUDA machine (the device tool's lent GPU).

Prints a markdown report (and writes it with ``--out``):

1. BSR on CUDA against the CPU kernel on a ViT-B/16-sized state (random weights): codes
   bit-identical, and the time of one member's rounding against a device memory copy of the
   same weights.
2. Peak GPU memory and time of one fine-tuning step of ViT-B/16 (random weights, 224 x 224
   random images) per method at ``config/paper.yaml``'s batch sizes: SGD (also SWAG, SSE, CSGLD,
   DE: the same step), IVON, BatchEnsemble (4 members, micro-batches of 64).
3. Evaluation throughput of ViT-B/16 and ViT-L/16, FP32 against bf16 autocast (what the
   prediction rules' time estimates come from).
4. One MMLU member of a small random Llama in bf16 (``lpe.stages.mmlu predict``), its time and peak
   memory, against the FP32 weights.
5. ``lpe.tools.apply`` in bf16 on CUDA (random weights, a generated image folder).
6. ``lpe.LowPrecisionEnsemble`` on CUDA in bf16, members drawn and decoded on the device: its
   codes against the CPU's, and M = 10 members against 10 passes of the model.

Usage (on the GPU machine, from the repository root): ``python benchmarks/gpu_checks.py
[--out FILE]``. The paper profile's stand-in DAG is run separately, by its test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

REPORT: list[str] = []
NUMBERS: dict = {}


def section(title):
    def wrap(fn):
        def run():
            REPORT.append(f"\n## {title}\n")
            try:
                fn()
            except Exception:  # one failed check must not hide the others
                REPORT.append("```\n" + traceback.format_exc()[-3000:] + "```")
            print("\n".join(REPORT[-3:]), flush=True)

        return run

    return wrap


def cuda_time(fn, repeats=5) -> float:
    """Median seconds of ``fn()`` on the GPU after one warm-up, timed with events."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


@section("1. BSR on CUDA vs the CPU kernel (ViT-B/16 state, INT-5)")
def bsr_check():
    import timm

    from lpe.formats.number_formats import int_format
    from lpe.formats.policy import QuantPolicy
    from lpe.formats.rounding import bsr_codes, format_scales
    from lpe.members.files import member_seed, tensor_key

    model = timm.create_model("vit_base_patch16_224", pretrained=False)
    policy, fmt = QuantPolicy(), int_format(5)
    state = {n: t for n, t in model.state_dict().items() if policy.quantizes(n, t)}
    seed, numel, mismatched = member_seed(0, 0), sum(t.numel() for t in state.values()), 0
    gpu = {n: t.cuda() for n, t in state.items()}
    scales = {n: format_scales(fmt, t) for n, t in gpu.items()}
    for name, tensor in state.items():
        cpu = bsr_codes(tensor, scales[name].cpu(), int(fmt.max_value), tensor_key(seed, name))
        cuda = bsr_codes(gpu[name], scales[name], int(fmt.max_value), tensor_key(seed, name))
        mismatched += int((cuda.cpu() != cpu).sum())
    t_bsr = cuda_time(lambda: [bsr_codes(gpu[n], scales[n], int(fmt.max_value), tensor_key(seed, n))
                               for n in gpu])  # fmt: skip
    flat = torch.cat([t.reshape(-1) for t in gpu.values()])
    t_copy = cuda_time(lambda: flat.clone())
    NUMBERS["bsr"] = {"weights": numel, "mismatched_codes": mismatched, "bsr_s": t_bsr,
                      "copy_s": t_copy}  # fmt: skip
    REPORT.append(
        f"{numel:,} quantized weights: {mismatched} codes differ between CUDA and the CPU "
        f"kernel. One member's rounding on the GPU: {t_bsr * 1e3:.1f} ms; a device copy of the "
        f"same FP32 weights: {t_copy * 1e3:.2f} ms ({t_bsr / t_copy:.0f}x)."
    )


@section("1b. Every number format's RTN and BSR on CUDA vs the CPU kernels (ViT-B/16 state)")
def formats_check():
    import timm

    from lpe.formats.number_formats import FORMATS
    from lpe.formats.policy import QuantPolicy
    from lpe.formats.rounding import round_nearest, round_stochastic
    from lpe.members.files import tensor_key

    model = timm.create_model("vit_base_patch16_224", pretrained=False)
    policy = QuantPolicy()
    state = {n: t for n, t in model.state_dict().items() if policy.quantizes(n, t)}
    gpu = {n: t.cuda() for n, t in state.items()}
    lines, NUMBERS["formats"] = [], {}
    for fmt_name, fmt in FORMATS.items():
        mismatched = 0
        for name, tensor in state.items():
            key = tensor_key(0, name)
            for cpu, cuda in ((round_nearest(fmt, tensor), round_nearest(fmt, gpu[name])),
                              (round_stochastic(fmt, tensor, key),
                               round_stochastic(fmt, gpu[name], key))):  # fmt: skip
                mismatched += int((cuda[0].cpu().long() != cpu[0].long()).sum())
        t_bsr = cuda_time(lambda fmt=fmt: [round_stochastic(fmt, t, 1) for t in gpu.values()])
        NUMBERS["formats"][fmt_name] = {"mismatched_codes": mismatched, "bsr_s": t_bsr}
        lines.append(f"| {fmt_name} | {mismatched} | {t_bsr * 1e3:.1f} |")
    REPORT.append("| format | codes differing from the CPU (RTN + BSR) | one member's BSR (ms) |\n"
                  "|---|---:|---:|\n" + "\n".join(lines))  # fmt: skip


@section("2. One fine-tuning step of ViT-B/16: peak GPU memory and time (FP32, random weights)")
def finetune_memory():
    import ivon
    import timm

    from lpe.methods.batchensemble import BatchEnsembleSettings, BatchEnsembleSgd, batch_ensemble
    from lpe.training.loop import Plan

    rows = ["| method | batch | peak GPU memory (GiB) | step (s) |", "|---|---|---|---|"]
    for method, batch, micro in (("sgd", 256, 0), ("ivon", 256, 0), ("batchensemble", 256, 64)):
        torch.cuda.empty_cache()
        model = timm.create_model("vit_base_patch16_224", pretrained=False).cuda().train()
        if method == "batchensemble":
            model = batch_ensemble(model, 4, torch.Generator().manual_seed(0), "gaussian", 0.1)
            model = model.cuda()
        if method == "ivon":
            opt = ivon.IVON(model.parameters(), lr=1e-3, ess=1_271_167, hess_init=1.0)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        members = BatchEnsembleSgd(BatchEnsembleSettings(members=4, micro_batch=micro),
                                   Plan(1, batch, 0))  # fmt: skip
        members.optimizer = opt  # the training loop's backward hook, on this optimizer
        x = torch.randn(batch, 3, 224, 224, device="cuda")
        y = torch.randint(0, 1000, (batch,), device="cuda")

        def step(model=model, opt=opt, x=x, y=y, method=method, members=members):
            opt.zero_grad(set_to_none=True)
            if method == "ivon":
                with opt.sampled_params(train=True):
                    torch.nn.functional.cross_entropy(model(x), y).backward()
            elif method == "batchensemble":
                members.backward(model, x, y)
            else:
                torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        seconds = cuda_time(step, repeats=3)
        peak = torch.cuda.max_memory_allocated() / 2**30
        result = {"batch": batch, "micro": micro, "peak_gib": peak, "step_s": seconds}
        NUMBERS.setdefault("finetune", {})[method] = result
        label = f"{batch} x 4 members (chunks of {micro})" if micro else str(batch)
        rows.append(f"| {method} | {label} | {peak:.1f} | {seconds:.3f} |")
        del model, opt, x, y
    REPORT.append("\n".join(rows))
    REPORT.append(
        "SWAG, SSE, CSGLD and DE take the SGD step (SWAG's moments are kept on the CPU). "
        "An ImageNet epoch is 4,966 steps at batch 256."
    )


@section("3. Evaluation throughput (images/s, batch 256, random weights)")
def eval_throughput():
    import timm

    from lpe.core.runtime import autocast
    from lpe.models.factory import keep_head_fp32

    rows = ["| model | FP32 | bf16 autocast | max abs diff of log-probs |", "|---|---|---|---|"]
    for name in ("vit_base_patch16_224", "vit_large_patch16_224"):
        model = keep_head_fp32(timm.create_model(name, pretrained=False)).cuda().eval()
        x = torch.randn(256, 3, 224, 224, device="cuda")
        out = {}
        for dtype in ("float32", "bfloat16"):
            torch.set_float32_matmul_precision("highest")  # FP32 as FP32; autocast sets TF32

            def forward(model=model, x=x, dtype=dtype):
                with torch.inference_mode(), autocast(torch.device("cuda"), dtype):
                    return torch.log_softmax(model(x).float(), -1)

            seconds = cuda_time(forward)
            out[dtype] = (256 / seconds, forward())
        diff = (out["bfloat16"][1] - out["float32"][1]).abs().max().item()
        NUMBERS.setdefault("eval", {})[name] = {k: v[0] for k, v in out.items()} | {"diff": diff}
        rows.append(f"| {name} | {out['float32'][0]:.0f} | {out['bfloat16'][0]:.0f} | "
                    f"{diff:.3g} |")  # fmt: skip
        del model, x
    REPORT.append("\n".join(rows))


@section("4. One MMLU member of a small random Llama (lpe.stages.mmlu predict, CUDA)")
def mmlu_member():
    from helpers import make_tiny_llama, write_mmlu
    from transformers import LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_tiny_llama(tmp / "llama")
        config = LlamaConfig.from_pretrained(folder)
        config.update({"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 8,
                       "num_attention_heads": 16, "num_key_value_heads": 8})  # fmt: skip
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)  # ~0.4B parameters, random
        root = write_mmlu(tmp / "mmlu")
        rows = ["| weights | seconds (process: load, round, predict) |", "|---|---|"]
        results = {}
        for dtype in ("float32", "bfloat16"):
            out = tmp / f"{dtype}.npz"
            command = [sys.executable, "-m", "lpe.stages.mmlu", "predict", "--model", str(folder),
                       "--mmlu", str(root), "--shots", "2", "--format", "int5", "--members", "1",
                       "--device", "cuda", "--dtype", dtype, "--out", str(out)]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - start
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            import numpy as np

            with np.load(out) as f:
                results[dtype] = f["log_probs"]
            rows.append(f"| {dtype} | {seconds:.1f} |")
        diff = float(abs(results["bfloat16"] - results["float32"]).max())
        NUMBERS["mmlu"] = {"max_abs_diff": diff}
        REPORT.append("\n".join(rows))
        REPORT.append(f"bf16 against FP32 weights, same member: max |log-prob diff| {diff:.3g}.")


@section("5. lpe.tools.apply in bf16 on CUDA (random ViT-B/16, generated image folder)")
def apply_bf16():
    from helpers import image_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = image_folder(Path(tmp) / "val", 1000, per_class=1, size=64)
        command = [sys.executable, "-m", "lpe.tools.apply", "--model", "vit_base_patch16_224",
                   "--no-pretrained", "--images", str(folder), "--format", "int5", "--members", "4",
                   "--limit", "512", "--batch-size", "128", "--device", "cuda", "--dtype",
                   "bfloat16", "--workers", "8"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                              env={**__import__("os").environ, "LPE_IMAGE_CACHE": tmp})  # fmt: skip
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        NUMBERS["apply_s"] = seconds
        REPORT.append("```\n" + done.stdout.strip() + "\n```")
        REPORT.append(f"{seconds:.1f} s for 512 images x (FP32 + RTN + 4 members), process "
                      "included.")  # fmt: skip


def _ensemble_row(name: str) -> str:
    import timm

    from lpe import LowPrecisionEnsemble

    torch.manual_seed(0)
    cpu_model = timm.create_model(name, pretrained=False).eval()
    model = timm.create_model(name, pretrained=False).eval()
    model.load_state_dict(cpu_model.state_dict())
    model = model.cuda()
    x = torch.randn(64, 3, 224, 224, device="cuda")
    on_gpu = LowPrecisionEnsemble(model, "int5", 10, seed=0)  # drawn on the device
    on_cpu = LowPrecisionEnsemble(cpu_model, "int5", 10, seed=0)
    pairs = zip(on_gpu.members(), on_cpu.members(), strict=True)
    same = all(torch.equal(a.codes[n], b.codes[n]) for a, b in pairs for n in a.codes)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = on_gpu(x)
    gap = float((bf16 - on_gpu(x)).abs().max())
    torch.cuda.reset_peak_memory_stats()

    def passes():
        with torch.inference_mode():
            return [model(x) for _ in range(10)]

    with torch.autocast("cuda", dtype=torch.bfloat16):
        ensemble_s = cuda_time(lambda: on_gpu(x), repeats=3)
        fp32_s = cuda_time(passes, repeats=3)
    peak = torch.cuda.max_memory_allocated() / 2**20
    NUMBERS[f"ensemble_{name}"] = {
        "same_codes": same, "bf16_gap": gap, "ensemble_s": ensemble_s, "passes_s": fp32_s,
    }  # fmt: skip
    return (f"| {name} | {same} | {gap:.3g} | {1e3 * ensemble_s:.1f} | {1e3 * fp32_s:.1f} | "
            f"{ensemble_s / fp32_s:.2f}x | {peak:.0f} |")  # fmt: skip


@section("6. lpe.LowPrecisionEnsemble on CUDA in bf16 (random ViT-S/16 and EfficientNet-Lite0)")
def ensemble_cuda():
    REPORT.append("| model | codes equal the CPU's | bf16 vs FP32 ensemble, max abs log-prob "
                  "| 10 members (ms) | 10 model passes (ms) | ratio | peak GPU MiB |\n"
                  "|---|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for name in ("vit_small_patch16_224", "efficientnet_lite0"):
        REPORT.append(_ensemble_row(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the report (and FILE.json with the numbers)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on the GPU machine")
    REPORT.append(f"# GPU checks\n\n{torch.cuda.get_device_name()}, torch {torch.__version__}.")
    checks = (bsr_check, formats_check, finetune_memory, eval_throughput, mmlu_member, apply_bf16,
              ensemble_cuda)  # fmt: skip
    for check in checks:
        check()
    text = "\n".join(REPORT) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(NUMBERS, indent=2))
    print("\n=== report ===\n" + text)


if __name__ == "__main__":
    main()
