"""LPE-BSR on your own timm model: FP32, RTN and LPE-BSR NLL/ERR/ECE on an image folder.

One command (and ``lpe.evaluation.user_model.apply_lpe``, the library call behind it) takes a timm
model, by name with its pretrained weights, or a local weights file, an image folder
(``lpe.data.images`` layout; any subset of the model's classes), a number format (INT-b or any
registered one), an ensemble size M and one or several seeds, and prints one row each for the FP32
model, rounding to nearest and each seed's LPE-BSR ensemble, with its memory under both accountings
(M full members; the shared-base file), its forward passes per image and its measured inference
time per image, then LPE-BSR's mean ± sd over the seeds, the suite's checks with their bands
(``lpe.evaluation.verdicts``) and a warning where the members are too far from RTN to win::

    python -m lpe.tools.apply --model vit_base_patch16_224.augreg_in21k_ft_in1k \
        --images /data/imagenet/val --format int5 --members 10 --seeds 0 1 2 \
        --calibration-fraction 0.2

The calibration control: with ``--calibration DIR`` (an image folder of the same classes) or
``--calibration-fraction F`` (that fraction of ``--images`` held out, seeded, and the rest
evaluated), every row gets its temperature-scaled twin ("+ts"), the temperature fit on those
images only (``lpe.evaluation.temperature``), never on the evaluated ones; the command says which
images it was fit on.

Images are decoded once (``lpe.data.images.image_loader``, into its cache) and every member reads
them from there. The members are a :class:`lpe.evaluation.ensemble.LowPrecisionEnsemble` per seed
(member k drawn with ``member_seed(seed, k)``), each decoded on the device once and run through
the one model instance on every batch, so memory holds one model, one member and the members'
shared base, and the ensemble is accumulated as it goes. The quantization policy is by role
(``lpe.formats.policy.policy_for``: the first layer, the classifier, embeddings, positional tables
and normalisation stay FP32; the weight of every other linear or convolution layer is quantized),
printed before the evaluation; ``--keep PATTERN`` keeps more FP32 and ``--quantize-head``
quantizes the classifier. ``--save-ensemble`` writes the members as one file (docs/file_format.md)
and ``--ensemble`` evaluates such a file. Pretrained weights come through timm's hub download and
its cache (``HF_HOME``); offline, a name whose weights are not cached stops with a message saying
what to download and where. Every user error is one line before any image is decoded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lpe.cli.flags import FORMAT_NAMES, add_runtime_arguments, format_name, positive_int
from lpe.core.artifacts import ArtifactError
from lpe.core.numerics import pin_cpu_numerics
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.evaluation.ensemble import LowPrecisionEnsemble, number_format
from lpe.evaluation.user_model import apply_lpe, describe_policy, summary_lines
from lpe.formats.policy import policy_for

DEFAULT_FORMAT = "int5"  # the paper's INT-5 members (Figure 2)


class ModelSourceError(ValueError):
    pass


def create_timm_model(
    name: str, pretrained: bool = True, weights: str | None = None, num_classes: int | None = None
):
    """A timm model by registry name, with hub weights, a local weights file, or none;
    ``num_classes``: its head's classes when not the pretrained config's (a fine-tuned model's
    weights file with a 10-way head, say)."""
    import timm

    from lpe.models.factory import unknown_timm_model

    if problem := unknown_timm_model(name):
        raise ModelSourceError(problem)
    head = {} if num_classes is None else {"num_classes": num_classes}
    if weights is not None:
        check_weights_file(weights)
    try:
        if weights is not None:
            overlay = {"file": str(weights)}
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **head)
        return timm.create_model(name, pretrained=pretrained, **head)
    except (OSError, RuntimeError, ValueError) as err:
        if weights is not None:
            raise ModelSourceError(weights_problem(name, weights, err, num_classes)) from err
        raise ModelSourceError(
            f"cannot fetch the pretrained weights of {name} ({type(err).__name__}: {err}). "
            'Offline? On a machine with network run `python -c "import timm; '
            f"timm.create_model('{name}', pretrained=True)\"` and copy its Hugging Face cache "
            "(~/.cache/huggingface, or $HF_HOME) here, or pass --weights FILE"
        ) from err


def check_weights_file(weights) -> None:
    """Refuse, before any model is built, a weights file that does not exist or cannot be read
    (truncated, or not a state dict), naming it."""
    from timm.models import load_state_dict

    if not Path(weights).is_file():
        raise ModelSourceError(f"weights file {weights} does not exist")
    try:
        load_state_dict(str(weights))
    except Exception as err:  # any reader's error: the file is what is wrong
        raise ModelSourceError(
            f"cannot read weights file {weights} ({type(err).__name__}: {str(err)[:200]}): is it "
            "truncated, or not a state dict (.safetensors, .pth, .bin)?"
        ) from err


def weights_problem(name: str, weights, err: Exception, num_classes: int | None = None) -> str:
    """One paragraph on why ``weights`` does not load into timm's ``name``: the key mismatch
    summarised (not timm's full key lists), a common prefix to strip, another head's size, and
    the Python route."""
    import timm
    from timm.models import load_state_dict

    given = load_state_dict(str(weights))
    head = {} if num_classes is None else {"num_classes": num_classes}
    wanted = timm.create_model(name, pretrained=False, **head).state_dict()
    missing, unexpected = sorted(set(wanted) - set(given)), sorted(set(given) - set(wanted))
    if not missing and not unexpected:  # the names match: shapes or values do not
        shapes = [n for n in wanted if tuple(given[n].shape) != tuple(wanted[n].shape)]
        if shapes:
            n = shapes[0]
            return (
                f"weights file {weights} does not fit {name}: {len(shapes)} of its tensors have "
                f"other shapes (e.g. {n}: {tuple(given[n].shape)} in the file, "
                f"{tuple(wanted[n].shape)} in the model). Another number of classes? Pass "
                "--num-classes with the file's head size"
            )
        return f"cannot load weights file {weights} into {name}: {str(err)[:300]}"
    hint = ""
    prefixes = {k.split(".", 1)[0] + "." for k in unexpected if "." in k}
    stripped = {k.split(".", 1)[1] for k in unexpected if "." in k}
    if missing and len(prefixes) == 1 and stripped >= set(missing):
        hint = f" Its keys carry the prefix {prefixes.pop()!r}: strip it."
    elif not missing:
        hint = (
            " Every tensor of the model is in it, with more beside: the weights of another "
            "(larger) architecture?"
        )
    return (
        f"weights file {weights} does not fit {name}: {len(missing)} of the model's "
        f"{len(wanted)} tensors are not in it (e.g. {', '.join(missing[:3])}) and "
        f"{len(unexpected)} of its {len(given)} are not the model's (e.g. "
        f"{', '.join(unexpected[:3])}).{hint} Another key naming? Load it in Python "
        f"(model = timm.create_model({name!r}); model.load_state_dict(renamed)) and use "
        "lpe.LowPrecisionEnsemble(model) or lpe.evaluation.user_model.apply_lpe(model, loader) "
        "(docs/apply.md)"
    )


def _save_predictions(path, table: pd.DataFrame) -> None:
    """Every row's per-image log-probabilities and the labels, as one .npz (atomically)."""
    import numpy as np

    from lpe.core.artifacts import write_with

    arrays = {key: lp.numpy().astype(np.float32) for key, lp in table.attrs["predictions"].items()}
    arrays["labels"] = table.attrs["labels"].numpy()
    write_with(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    print(f"wrote {path}: per-image log-probabilities of {', '.join(arrays)}")


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        metavar="N",
        help="the head's classes when not the pretrained config's (a weights "
        "file fine-tuned to N classes); the class folders are then the model's "
        "classes in sorted order, or mapped with --class-map",
    )
    parser.add_argument("--images", required=True, help="image folder: ROOT/<class>/<image>")
    parser.add_argument(
        "--format",
        type=format_name,
        metavar="NAME",
        help=f"the members' number format: {FORMAT_NAMES} (default int5)",
    )
    # the flag of older versions, named with its replacement when given
    parser.add_argument("--bits", type=int, help=argparse.SUPPRESS)
    stored = parser.add_mutually_exclusive_group()
    stored.add_argument(
        "--save-ensemble",
        metavar="E.safetensors",
        help="also write the LPE-BSR members as one ensemble file "
        "(a shared base plus a bit per member and weight)",
    )
    stored.add_argument(
        "--ensemble",
        metavar="E.safetensors",
        help="evaluate the members of this ensemble file (made from the same "
        "model) instead of drawing them",
    )
    parser.add_argument("--members", type=int, help="LPE-BSR ensemble size M (default 10)")
    seeding = parser.add_mutually_exclusive_group()
    seeding.add_argument("--seed", type=int, help="the members' seed (default 0)")
    seeding.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="several LPE-BSR ensembles, one per seed: a row each, their mean "
        "± sd, and the draw's noise in the checks' bands",
    )
    parser.add_argument(
        "--with-rtn",
        action="store_true",
        help="--save-ensemble stores the RTN member too (one more bit per "
        "quantized weight); otherwise RTN is rounded again from the "
        "model",
    )
    parser.add_argument(
        "--save-predictions",
        metavar="P.npz",
        help="also write every row's per-image log-probabilities (N, C) and "
        "the labels (numpy .npz, a key per row: fp32, rtn, lpe-bsr-SEED, "
        "...+ts)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, help="evaluate a fixed random subset of this size")
    calibrate = parser.add_mutually_exclusive_group()
    calibrate.add_argument(
        "--calibration",
        help="an image folder (the same classes) to fit each row's temperature on (FP32, RTN and "
        "every LPE-BSR ensemble: each gets a temperature-scaled '+ts' twin)",
    )
    calibrate.add_argument(
        "--calibration-fraction",
        type=float,
        help="hold out this fraction of --images (seeded) to fit the temperature on; the rest "
        "is evaluated",
    )
    parser.add_argument(
        "--class-map",
        metavar="FILE",
        help="the model's class index of each class folder ('folder index' a "
        "line, or a JSON object); without it, folders named by ImageNet-1k "
        "WordNet id may be any subset of a 1000-class model's classes",
    )
    parser.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="PATTERN",
        help="also keep these tensors FP32 (fnmatch on state-dict names, e.g. "
        "'blocks.11.*'; repeatable). By default the first layer, the classifier, "
        "embeddings, positional tables and normalisation stay FP32",
    )
    parser.add_argument(
        "--quantize-head",
        action="store_true",
        help="quantize the classifier too (kept FP32 by default)",
    )
    parser.add_argument("--workers", type=int, default=0, help="data loading processes")
    parser.add_argument("--out", help="also write the table as csv")
    add_runtime_arguments(parser)
    return parser


def checked_seeds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """The LPE-BSR seeds, after every check that needs no model or image (one-line errors)."""
    if args.bits is not None:
        parser.error(f"--bits {args.bits} is now --format int{args.bits}")
    if args.ensemble:  # its members, format and seed are the file's: refuse what would be ignored
        given = {
            "--format": args.format,
            "--members": args.members,
            "--seed": args.seed,
            "--seeds": args.seeds,
            "--with-rtn": args.with_rtn or None,
        }
        ignored = [flag for flag, value in given.items() if value is not None]
        if ignored:
            parser.error(
                f"--ensemble evaluates the members stored in {args.ensemble}: "
                f"{', '.join(ignored)} would be ignored; drop them"
            )
    args.members = 10 if args.members is None else args.members
    seeds = args.seeds or [0 if args.seed is None else args.seed]
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        parser.error(f"--seeds must be distinct and >= 0, got {seeds}")
    if args.save_ensemble and len(seeds) > 1:
        parser.error("--save-ensemble writes one ensemble: give one --seed, not --seeds")
    if args.with_rtn and not args.save_ensemble:
        parser.error("--with-rtn says what --save-ensemble stores: give --save-ensemble too")
    if args.members < 1:
        parser.error(f"--members must be >= 1, got {args.members}")
    fraction = args.calibration_fraction
    if fraction is not None and not 0 < fraction < 1:
        parser.error(f"--calibration-fraction must be in (0, 1), got {fraction}")
    return seeds


def load_model(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The model (its head kept FP32) and, with ``--ensemble``, that file's ensemble."""
    from lpe.models.factory import keep_head_fp32

    if args.num_classes is not None and not (args.weights or args.no_pretrained):
        parser.error(
            "--num-classes needs --weights FILE (the file's head): with the hub's "
            "weights, timm would give the model a new, random head"
        )
    try:
        model = create_timm_model(
            args.model, not args.no_pretrained, args.weights, args.num_classes
        )
    except ModelSourceError as err:
        parser.error(str(err))
    model = keep_head_fp32(model)
    ensembles = None
    if getattr(args, "ensemble", None):  # before any image is decoded (lpe.tools.choose has none)
        try:
            ensembles = [LowPrecisionEnsemble.load(args.ensemble, model)]
        except ArtifactError as err:
            parser.error(str(err))
        shared = ensembles[0].shared
        print(
            f"members from {args.ensemble}: {len(shared)} ({shared.fmt.label}), "
            f"{shared.bits / 1e6:.2f} Mbit stored"
        )
    return model, ensembles


def open_images(parser: argparse.ArgumentParser, args: argparse.Namespace, model):
    """The evaluated images and the calibration images (or None), as the model sees them."""
    from lpe.data.images import ImageFolderError, image_loader, model_transform, read_class_map

    fraction = args.calibration_fraction
    transform, held_out = model_transform(model), fraction or 0.0
    try:
        classes = read_class_map(args.class_map) if args.class_map else None
        loader = image_loader(
            args.images,
            transform,
            model.num_classes,
            args.batch_size,
            args.limit,
            workers=args.workers,
            held_out=held_out,
            class_map=classes,
        )
    except ImageFolderError as err:
        parser.error(str(err))
    calibration = None
    if args.calibration:
        calibration = image_loader(
            args.calibration,
            transform,
            model.num_classes,
            args.batch_size,
            workers=args.workers,
            class_map=classes,
        )
        print(f"temperature fit on {args.calibration} ({len(calibration.labels)} images)")
    elif fraction:
        calibration = image_loader(
            args.images,
            transform,
            model.num_classes,
            args.batch_size,
            None,
            workers=args.workers,
            held_out=fraction,
            part="held_out",
            class_map=classes,
        )
        print(
            f"temperature fit on {len(calibration.labels)} images of {args.images} held out "
            f"({fraction:g}, seeded); the other {len(loader.labels)} are evaluated"
        )
    else:
        print(
            "no calibration images (--calibration, --calibration-fraction): no "
            "temperature-scaled row"
        )
    return loader, calibration


def write_outputs(args: argparse.Namespace, table: pd.DataFrame, ensembles) -> None:
    """The table, the summary and what the flags ask to keep (ensemble, predictions, CSV)."""
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for line in summary_lines(table):
        print(line)
    if args.save_ensemble:
        ensemble = ensembles[0]
        bits = ensemble.save(args.save_ensemble, {"model": args.model})
        rtn = " and the RTN member" if args.with_rtn else ""
        print(
            f"wrote {args.save_ensemble}: {len(ensemble)} LPE-BSR members{rtn} in "
            f"{bits / 1e6:.2f} Mbit (shared base), against {ensemble.paper_bits() / 1e6:.2f} "
            f"Mbit as {len(ensemble)} LPE-BSR member files"
        )
    if args.save_predictions:
        _save_predictions(args.save_predictions, table)
    if args.out:
        from lpe.core.artifacts import write_with

        write_with(args.out, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))


def main(argv: list[str] | None = None) -> None:
    pin_cpu_numerics()  # the suite's CPU paths for this program (lpe.core.numerics)
    parser = build_parser()
    args = parser.parse_args(argv)
    seeds = checked_seeds(parser, args)
    try:  # before any download or decoding: a CUDA request on a CPU host is a one-line error
        device = resolve_device(args.device)
    except RuntimeError as err:
        parser.error(str(err))
    set_threads(args.threads)
    model, ensembles = load_model(parser, args)
    loader, calibration = open_images(parser, args, model)
    policy = policy_for(model, keep=args.keep, quantize_head=args.quantize_head)
    print(describe_policy(policy, model))
    if args.save_ensemble:  # the one drawn for the table is the one saved
        fmt = number_format(args.format or DEFAULT_FORMAT)
        ensembles = [
            LowPrecisionEnsemble(
                model.to(device),
                fmt,
                args.members,
                seeds[0],
                policy,
                with_rtn=args.with_rtn,
                progress=f"draw seed {seeds[0]}",
            )
        ]
    with autocast(device, args.dtype):
        table = apply_lpe(
            model,
            loader,
            args.format or DEFAULT_FORMAT,
            args.members,
            seeds[0],
            device=device,
            policy=policy,
            calibration=calibration,
            ensembles=ensembles,
            seeds=seeds,
            keep_predictions=bool(args.save_predictions),
        )
    write_outputs(args, table, ensembles)


if __name__ == "__main__":
    main()
