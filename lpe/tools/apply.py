"""LPE-BSR on your own timm model: FP32, RTN and LPE-BSR NLL/ERR/ECE on an image folder.

One command (and ``apply_lpe``, the function behind it) takes a timm model, by name with its
pretrained weights, or a local weights file, an image folder (``lpe.data.images`` layout), a
precision INT-b and an ensemble size M, and prints one row each for the FP32 model, rounding to
nearest and the LPE-BSR ensemble of M members, with the memory each needs, its forward passes per
image and its measured inference time per image::

    python -m lpe.tools.apply --model vit_base_patch16_224.augreg_in21k_ft_in1k \\
        --images /data/imagenet/val --bits 5 --members 10 --calibration-fraction 0.2

The calibration control: with ``--calibration DIR`` (an image folder of the same classes) or
``--calibration-fraction F`` (that fraction of ``--images`` held out, seeded, and the rest
evaluated), the table also holds the temperature-scaled FP32 model ("fp32+ts"), its temperature
fit on those images only (``lpe.evaluation.temperature``), never on the evaluated ones; the command
says which images it was fit on.

Images are decoded once (``lpe.data.images.image_loader``, into its cache) and every member reads
them from there: each member is rounded on the device, written into the one model instance once
(``Member.load_into``) and evaluated on every batch, so memory holds one model plus one member's
b-bit codes, and the ensemble is accumulated as it goes. Member k is drawn with
``member_seed(seed, k)``; the quantization policy is by role (``lpe.formats.policy.policy_for``:
the first layer, the classifier, embeddings, positional tables and normalisation stay FP32; the
weight of every other linear or convolution layer is quantized), printed before the evaluation;
``--keep PATTERN`` keeps more FP32 and ``--quantize-head`` quantizes the classifier.
Pretrained weights come through timm's hub download and its cache (``HF_HOME``); offline, a name
whose weights are not cached stops with a message saying what to download and where.
"""

from __future__ import annotations

import argparse
import math
import time

import pandas as pd
import torch
from tqdm import tqdm

from lpe.core import metrics
from lpe.core.artifacts import tensors_sha256
from lpe.core.numerics import pin_cpu_numerics
from lpe.core.runtime import add_runtime_arguments, autocast, resolve_device, set_threads
from lpe.evaluation.temperature import fit_temperature, scaled
from lpe.formats.integer import MAX_BITS, MIN_BITS
from lpe.formats.names import REGISTRY
from lpe.formats.policy import QuantPolicy, policy_for
from lpe.formats.registry import get_format, int_format
from lpe.members.files import member_seed, quantize
from lpe.members.shared_base import SharedBase, encode, load_shared_base, save_shared_base


class ModelSourceError(ValueError):
    pass


def create_timm_model(name: str, pretrained: bool = True, weights: str | None = None):
    """A timm model by registry name, with hub weights, a local weights file, or none."""
    import timm

    from lpe.models.factory import unknown_timm_model

    if problem := unknown_timm_model(name):
        raise ModelSourceError(problem)
    try:
        if weights is not None:
            overlay = {"file": str(weights)}
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
        return timm.create_model(name, pretrained=pretrained)
    except (OSError, RuntimeError, ValueError) as err:
        if weights is not None:
            raise ModelSourceError(
                f"cannot load weights file {weights} into {name}: {err}"
            ) from err
        raise ModelSourceError(
            f"cannot fetch the pretrained weights of {name} ({type(err).__name__}: {err}). "
            'Offline? On a machine with network run `python -c "import timm; '
            f"timm.create_model('{name}', pretrained=True)\"` and copy its Hugging Face cache "
            "(~/.cache/huggingface, or $HF_HOME) here, or pass --weights FILE"
        ) from err


@torch.inference_mode()
def apply_lpe(
    model: torch.nn.Module,
    loader,
    bits: int | str,
    members: int,
    seed: int = 0,
    device: torch.device | None = None,
    policy: QuantPolicy | None = None,
    calibration=None,
    ensemble: SharedBase | None = None,
    keep: list | None = None,
) -> pd.DataFrame:
    """FP32, RTN and LPE-BSR (``members`` members at INT-``bits``, or in the number format named
    ``bits``, ``lpe.formats.names.REGISTRY``) scores of ``model``, and with a ``calibration`` loader
    (other images than ``loader``'s), the temperature-scaled FP32 model.

    ``ensemble`` (:mod:`lpe.members.shared_base`, made from this model) evaluates its RTN and
    LPE-BSR members, decoded one at a time, instead of drawing them; ``keep``, a list, receives
    every member drawn (RTN first), for saving them as one ensemble file.

    ``loader`` yields ``(images, labels)`` batches and is read once per member, so it should be
    cheap to reread: ``lpe.data.images.image_loader`` decodes a folder once into its cache. Each
    member is rounded on ``device`` from the weights there (its codes never leave the device),
    written into the model once, and evaluated on every batch; the ensemble is accumulated as a
    running log-sum-exp, so memory holds one model, one member and ``(N, C)`` log-probabilities.
    """
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    device = device or torch.device("cpu")
    policy = policy or policy_for(model)
    model = model.to(device).eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # on the device
    fmt = get_format(bits) if isinstance(bits, str) else int_format(bits)
    draws = {
        "fp32": lambda: [None],
        "rtn": lambda: [quantize(state, fmt, "rtn", seed=0, policy=policy)],
        "lpe-bsr": lambda: (
            quantize(state, fmt, "bsr", seed=member_seed(seed, k), policy=policy)
            for k in range(members)
        ),
    }
    if ensemble is not None:
        fmt = ensemble.fmt
        for method, name in (("rtn", "rtn"), ("bsr", "lpe-bsr")):
            indices = [m for m, made in enumerate(ensemble.methods) if made == method]
            draws[name] = lambda indices=indices: (ensemble.member(m) for m in indices)
    rows = []
    for name, draw in draws.items():
        total = None  # (N, C) log of the summed member probabilities
        member_nll, m, memory, seconds = 0.0, 0, 0, 0.0
        for member in tqdm(draw(), desc=f"apply {name}", mininterval=5):
            if member is None:
                model.load_state_dict(state)
                memory += 32 * _numel(state)
            else:
                member.load_into(model)
                memory += member.bits
                if keep is not None:
                    keep.append(member)
            start = time.perf_counter()
            lp, labels = _log_probs(model, loader, device)  # (N, C), (N,)
            seconds += time.perf_counter() - start
            member_nll += float(-lp.gather(-1, labels[:, None]).sum())
            total = lp if total is None else torch.logaddexp(total, lp)
            m += 1
        lp = (total - math.log(m))[None]  # (1, N, C): the ensemble's own prediction
        nll, avg = metrics.nll(lp, labels), member_nll / (m * len(labels))
        rows.append({
            "method": name, "precision": fmt.name if member is not None else "fp32",
            "members": m, "memory_mbit": memory / 1e6, "nll": nll,
            "err": metrics.err(lp, labels), "ece": metrics.ece(lp, labels), "avg_loss": avg,
            "ambiguity": avg - nll, "temperature": math.nan, "forward_passes": m,
            "infer_us": 1e6 * seconds / len(labels),
        })  # fmt: skip
        if name == "fp32" and calibration is not None:
            rows.append(_temperature_scaled(rows[-1], model, calibration, device, lp, labels))
    model.load_state_dict(state)
    return pd.DataFrame(rows)


def _temperature_scaled(fp32_row, model, calibration, device, lp, labels) -> dict:
    """The FP32 row at the temperature fit on the ``calibration`` images (never on ``labels``'
    images): NLL and ECE at that temperature, the same ERR (a temperature keeps the argmax)."""
    calib_lp, calib_labels = _log_probs(model, calibration, device)
    temperature = fit_temperature(calib_lp[None], calib_labels)
    at_t = scaled(lp, temperature)
    return {**fp32_row, "method": "fp32+ts", "nll": metrics.nll(at_t, labels),
            "ece": metrics.ece(at_t, labels), "avg_loss": math.nan, "ambiguity": math.nan,
            "temperature": temperature}  # fmt: skip


def describe_policy(policy: QuantPolicy, model: torch.nn.Module) -> str:
    """What the members quantize and what stays FP32, for the log: counts, share, the patterns."""
    summary = policy.split(model.state_dict())
    shown = ", ".join(policy.exclude[:8]) + (", ..." if len(policy.exclude) > 8 else "")
    return f"policy: {summary.describe()}; FP32 by role or --keep: {shown}"


def _log_probs(model, loader, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C)`` FP32 log-softmax of the model on every batch, and the ``(N,)`` labels."""
    out, labels = [], []
    for x, y in loader:
        out.append(torch.log_softmax(model(x.to(device)).float(), dim=-1).cpu())
        labels.append(y)
    return torch.cat(out), torch.cat(labels)


def _numel(state: dict[str, torch.Tensor]) -> int:
    return sum(math.prod(t.shape) for t in state.values())


def main(argv: list[str] | None = None) -> None:
    pin_cpu_numerics()  # the suite's CPU paths for this program (lpe.core.numerics)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        required=True,
        help="timm model name, e.g. vit_base_patch16_224.augreg_in21k_ft_in1k",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--weights", help="a local weights file (.safetensors, .pth) instead of the hub"
    )
    source.add_argument("--no-pretrained", action="store_true", help="random weights (for tests)")
    parser.add_argument("--images", required=True, help="image folder: ROOT/<class>/<image>")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bits", type=int, choices=range(MIN_BITS, MAX_BITS + 1),
                           metavar=f"{{{MIN_BITS}..{MAX_BITS}}}",
                           help="INT-b members (default 5)")  # fmt: skip
    precision.add_argument("--format", choices=list(REGISTRY), help="members in this format")
    stored = parser.add_mutually_exclusive_group()
    stored.add_argument("--save-ensemble", metavar="E.safetensors",
                        help="also write the RTN and LPE-BSR members as one ensemble file "
                        "(a shared base plus a bit per member and weight)")  # fmt: skip
    stored.add_argument("--ensemble", metavar="E.safetensors",
                        help="evaluate the members of this ensemble file (made from the same "
                        "model) instead of drawing them")  # fmt: skip
    parser.add_argument("--members", type=int, help="LPE-BSR ensemble size M (default 10)")
    parser.add_argument("--seed", type=int, help="the members' seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, help="evaluate a fixed random subset of this size")
    calibrate = parser.add_mutually_exclusive_group()
    calibrate.add_argument(
        "--calibration",
        help="an image folder (the same classes) to fit the FP32 model's temperature on",
    )
    calibrate.add_argument(
        "--calibration-fraction",
        type=float,
        help="hold out this fraction of --images (seeded) to fit the temperature on; the rest "
        "is evaluated",
    )
    parser.add_argument("--class-map", metavar="FILE",
                        help="the model's class index of each class folder ('folder index' a "
                        "line, or a JSON object); without it, folders named by ImageNet-1k "
                        "WordNet id may be any subset of a 1000-class model's classes")  # fmt: skip
    parser.add_argument("--keep", action="append", default=[], metavar="PATTERN",
                        help="also keep these tensors FP32 (fnmatch on state-dict names, e.g. "
                        "'blocks.11.*'; repeatable). By default the first layer, the classifier, "
                        "embeddings, positional tables and normalisation stay FP32")  # fmt: skip
    parser.add_argument("--quantize-head", action="store_true",
                        help="quantize the classifier too (kept FP32 by default)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="data loading processes")
    parser.add_argument("--out", help="also write the table as csv")
    add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    if args.ensemble:  # its members, format and seed are the file's: refuse what would be ignored
        given = {"--bits": args.bits, "--format": args.format, "--members": args.members,
                 "--seed": args.seed}  # fmt: skip
        ignored = [flag for flag, value in given.items() if value is not None]
        if ignored:
            parser.error(f"--ensemble evaluates the members stored in {args.ensemble}: "
                         f"{', '.join(ignored)} would be ignored; drop them")  # fmt: skip
    args.members = 10 if args.members is None else args.members
    args.seed = 0 if args.seed is None else args.seed
    try:  # before any download or decoding: a CUDA request on a CPU host is a one-line error
        device = resolve_device(args.device)
    except RuntimeError as err:
        parser.error(str(err))
    if args.members < 1:
        parser.error(f"--members must be >= 1, got {args.members}")
    fraction = args.calibration_fraction
    if fraction is not None and not 0 < fraction < 1:
        parser.error(f"--calibration-fraction must be in (0, 1), got {fraction}")
    from lpe.data.images import ImageFolderError, image_loader, model_transform, read_class_map
    from lpe.models.factory import keep_head_fp32

    set_threads(args.threads)
    model = keep_head_fp32(create_timm_model(args.model, not args.no_pretrained, args.weights))
    transform, held_out = model_transform(model), fraction or 0.0
    try:
        classes = read_class_map(args.class_map) if args.class_map else None
        loader = image_loader(args.images, transform, model.num_classes, args.batch_size,
                              args.limit, args.workers, held_out, class_map=classes)  # fmt: skip
    except ImageFolderError as err:
        parser.error(str(err))
    calibration = None
    if args.calibration:
        calibration = image_loader(args.calibration, transform, model.num_classes,
                                   args.batch_size, workers=args.workers,
                                   class_map=classes)  # fmt: skip
        print(f"temperature fit on {args.calibration} ({len(calibration.labels)} images)")
    elif fraction:
        calibration = image_loader(args.images, transform, model.num_classes, args.batch_size,
                                   None, args.workers, fraction, "held_out",
                                   class_map=classes)  # fmt: skip
        print(f"temperature fit on {len(calibration.labels)} images of {args.images} held out "
              f"({fraction:g}, seeded); the other {len(loader.labels)} are evaluated")  # fmt: skip
    else:
        print("no calibration images (--calibration, --calibration-fraction): no "
              "temperature-scaled row")  # fmt: skip
    policy = policy_for(model, keep=args.keep, quantize_head=args.quantize_head)
    print(describe_policy(policy, model))
    ensemble, kept = None, [] if args.save_ensemble else None
    weights = tensors_sha256(model.state_dict())  # the ensemble file's model, by its weights
    if args.ensemble:
        ensemble, meta = load_shared_base(args.ensemble)
        if meta.get("weights_sha256") != weights:
            parser.error(f"{args.ensemble} was made from other weights than {args.model}'s "
                         "(its weights_sha256 differs): evaluate it with the model it was "
                         "saved from")  # fmt: skip
        print(f"members from {args.ensemble}: {len(ensemble)} ({ensemble.fmt.label}), "
              f"{ensemble.bits / 1e6:.2f} Mbit stored")  # fmt: skip
    with autocast(device, args.dtype):
        table = apply_lpe(model, loader, args.format or args.bits or 5, args.members,
                          args.seed, device, policy, calibration=calibration,
                          ensemble=ensemble, keep=kept)  # fmt: skip
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.save_ensemble:
        provenance = {"model": args.model, "weights_sha256": weights}
        bits = save_shared_base(args.save_ensemble, encode(kept), provenance)
        paper = table.loc[table["method"] != "fp32", "memory_mbit"].sum()
        print(f"wrote {args.save_ensemble}: {len(kept)} members in {bits / 1e6:.2f} Mbit (shared "
              f"base), against {paper:.2f} Mbit as {len(kept)} member files")  # fmt: skip
    if args.out:
        from lpe.core.artifacts import write_with

        write_with(args.out, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))


if __name__ == "__main__":
    main()
