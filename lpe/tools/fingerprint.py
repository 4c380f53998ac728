"""The CPU numerics fingerprint: hashes of the computations that decide the suite's numbers.

A regeneration of the committed reference is exact only on a machine that computes every float32
operation of the suite to the same bits as the machine that made it. This module hashes those
operations on fixed inputs, one line each (first 12 hex digits of a SHA-1 of the result's bytes):

- the GEMMs of each mini ViT's layers, forward (``linear``) and backward (the two matrix
  products of the weight and input gradients), at the shapes a training minibatch gives;
- the patch-embedding convolution (oneDNN) forward and backward;
- torch's element-wise and reduction kernels (layer norm, softmax, GELU, logsumexp, sum);
- three AdamW steps of each whole mini model on a fixed minibatch (everything at once);
- the parts of such a step one by one: the attention's batched matrix products, the backward
  kernels of layer norm, softmax and GELU, and AdamW's update on fixed gradients.

``python -m lpe.tools.fingerprint`` prints this machine's fingerprint; ``--check FILE`` compares it
with a recorded one and names the first computation that differs (exit 1), so a machine that would
not regenerate the reference says so in seconds, with the reason.
``results/numerics_fingerprint.txt`` is the reference machine's (the one that made
``results/mini``), written with ``--out``. One thread, fixed seeds, the process's own pinning
(``lpe.core.numerics``, set by this tool's ``main`` before it computes).

Usage: ``python -m lpe.tools.fingerprint [--check results/numerics_fingerprint.txt] [--out FILE]``
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from lpe.core.numerics import describe, pin_cpu_numerics, settings

# Each mini ViT as the suite trains it: 40 inputs in patches of 4 give 10 tokens + the class token.
TOKENS = 11
BATCH = 128  # train.batch_size of the mini profile
MINI = ("vit_mini_t", "vit_mini_s", "vit_mini_b", "vit_mini_l")
REFERENCE = Path(__file__).resolve().parents[2] / "results" / "numerics_fingerprint.txt"


def digest(t: torch.Tensor) -> str:
    """The first 12 hex digits of the SHA-1 of a tensor's bytes."""
    return hashlib.sha1(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:12]


def cpu_name() -> str:
    """The CPU's name, vendor, family and model (Linux), e.g. ``AMD EPYC (AuthenticAMD family 26
    model 2)``; elsewhere what ``platform`` knows."""
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        return (
            f"{fields['model name']} ({fields.get('vendor_id', '?')} family "
            f"{fields.get('cpu family', '?')} model {fields.get('model', '?')})"
        )
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def _linear_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """The distinct (in, out) shapes of a model's linear layers, in module order."""
    shapes = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            shape = (module.in_features, module.out_features)
            if shape not in shapes:
                shapes.append(shape)
    return shapes


def computations() -> Iterator[tuple[str, str]]:
    """(name, hash) of every fingerprinted computation, in a fixed order."""
    from lpe.models.factory import create_model  # timm: imported only when computing

    g = torch.Generator().manual_seed(0)
    models = {name: create_model(name, 10, (1, 1, 40), seed=0) for name in MINI}
    # GEMMs forward and backward at each layer shape of the mini models
    for name, model in models.items():
        for k, n in _linear_shapes(model):
            rows = BATCH * TOKENS if n != 10 else BATCH  # the head sees the class token only
            x = torch.randn(rows, k, generator=g)
            w = torch.randn(n, k, generator=g)
            grad = torch.randn(rows, n, generator=g)
            yield f"{name} linear {rows}x{k}->{n} forward", digest(torch.nn.functional.linear(x, w))
            yield f"{name} linear {rows}x{k}->{n} weight grad", digest(grad.T @ x)
            yield f"{name} linear {rows}x{k}->{n} input grad", digest(grad @ w)
    # the patch embedding: oneDNN's convolution, forward and backward
    x = torch.randn(BATCH, 1, 1, 40, generator=g, requires_grad=True)
    w = torch.randn(64, 1, 1, 4, generator=g, requires_grad=True)
    out = torch.nn.functional.conv2d(x, w, stride=(1, 4))
    out.backward(torch.randn(out.shape, generator=g))
    yield "conv2d patch 1x4 forward", digest(out)
    yield "conv2d patch 1x4 weight grad", digest(w.grad)
    yield "conv2d patch 1x4 input grad", digest(x.grad)
    # torch's own vectorised kernels (ATEN_CPU_CAPABILITY)
    y = torch.randn(BATCH, TOKENS, 96, generator=g)
    yield "layer_norm", digest(torch.nn.functional.layer_norm(y, (96,)))
    yield "softmax", digest(torch.softmax(y, -1))
    yield "log_softmax", digest(torch.log_softmax(y, -1))
    yield "gelu", digest(torch.nn.functional.gelu(y))
    yield "logsumexp", digest(torch.logsumexp(y, -1))
    yield "sum", digest(y.sum(0))
    yield "exp", digest(y.exp())
    # a few optimizer steps of each whole mini model: forward, backward, AdamW
    x = torch.randn(BATCH, 1, 1, 40, generator=g)
    labels = torch.randint(0, 10, (BATCH,), generator=g)
    for name, model in models.items():
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(model(x), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        yield (
            f"{name} 3 AdamW steps",
            digest(torch.cat([p.reshape(-1) for p in model.parameters()])),
        )
    # The parts of a training step, one by one, so that a machine whose AdamW steps differ is
    # told which part (their own generator: the lines above keep their inputs and hashes).
    yield from _step_parts(models)


def _step_parts(models: dict[str, torch.nn.Module]) -> Iterator[tuple[str, str]]:
    """The attention's batched matrix products (forward and backward), the backward kernels
    of layer norm, softmax and GELU, and one AdamW update on fixed gradients."""
    g = torch.Generator().manual_seed(1)
    for name, model in models.items():
        block = model.blocks[0].attn
        heads, dim = block.num_heads, block.head_dim
        q, k, v = (
            torch.randn(BATCH, heads, TOKENS, dim, generator=g, requires_grad=True)
            for _ in range(3)
        )
        scores = q @ k.transpose(-2, -1)
        out = scores @ v
        out.backward(torch.randn(out.shape, generator=g))
        yield f"{name} attention q k^T ({heads} heads x {dim})", digest(scores)
        yield f"{name} attention weights v", digest(out)
        for tensor, label in ((q, "q"), (k, "k"), (v, "v")):
            yield f"{name} attention {label} grad", digest(tensor.grad)
    y = torch.randn(BATCH, TOKENS, 96, generator=g, requires_grad=True)
    for label, fn in (
        ("layer_norm", lambda t: torch.nn.functional.layer_norm(t, (96,))),
        ("softmax", lambda t: torch.softmax(t, -1)),
        ("gelu", torch.nn.functional.gelu),
    ):
        y.grad = None
        fn(y).backward(torch.randn(y.shape, generator=g))
        yield f"{label} backward", digest(y.grad)
    weights = torch.randn(4096, generator=g).requires_grad_()
    opt = torch.optim.AdamW([weights], lr=2e-3, weight_decay=0.05)
    for _ in range(3):
        weights.grad = torch.randn(4096, generator=g)
        opt.step()
    yield "AdamW update on fixed gradients (3 steps)", digest(weights)


def fingerprint() -> str:
    """This process's fingerprint: a header naming the CPU and the settings, then one line per
    computation (``<hash>  <name>``)."""
    torch.set_num_threads(1)
    head = [
        f"# cpu: {cpu_name()}; torch {torch.__version__}; "
        f"capability {torch.backends.cpu.get_cpu_capability()}",
        f"# env: {settings()}",
    ]
    return "\n".join(head + [f"{h}  {name}" for name, h in computations()]) + "\n"


def parse(text: str) -> dict[str, str]:
    """name -> hash of a fingerprint's lines (comments skipped)."""
    rows = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            h, _, name = line.partition("  ")
            rows[name.strip()] = h
    return rows


def header(text: str) -> str:
    return "; ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def differences(reference: str, actual: str) -> list[str]:
    """The computations whose hash differs (or is missing on one side), in the reference's order."""
    ref, act = parse(reference), parse(actual)
    names = list(ref) + [n for n in act if n not in ref]
    return [n for n in names if ref.get(n) != act.get(n)]


def main(argv: list[str] | None = None) -> int:
    pin_cpu_numerics()  # the suite's CPU paths for this program (lpe.core.numerics)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, help="a recorded fingerprint to compare with")
    parser.add_argument("--out", type=Path, help="write this machine's fingerprint here")
    args = parser.parse_args(argv)
    if args.check is not None and not args.check.is_file():
        parser.error(f"--check {args.check}: no such file")
    mine = fingerprint()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(mine)
    print(mine + describe())
    if args.check is None:
        return 0
    reference = args.check.read_text()
    differ = differences(reference, mine)
    total = len(parse(reference))
    if not differ:
        print(
            f"numerics fingerprint: all {total} computations equal {args.check} "
            f"({header(reference)})"
        )
        return 0
    print(
        f"NUMERICS FINGERPRINT DIFFERS: {len(differ)} of {total} computations differ from "
        f"{args.check} ({header(reference)}); first: {differ[0]!r}. This machine computes "
        f"other bits than the reference's, so the regeneration cannot be exact.",
        file=sys.stderr,
    )
    for name in differ:
        print(f"  - {name}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
