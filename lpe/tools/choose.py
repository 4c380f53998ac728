"""Which number format and how many members pay on your timm model, within a memory budget.

Evaluates FP32 and, in every registered format (or ``--formats``), RTN (M = 1) and LPE-BSR with
M = 2, 5, 10, 20 members (each member drawn and run once; the smaller ensembles are prefixes of
the larger), chooses on a held-out share of the images and reports on the others: a table with
both memory accountings, the choice and its checks with their bands, and a figure of NLL against
memory (``lpe.evaluation.choice``)::

    python -m lpe.tools.choose --model efficientnet_lite0.ra_in1k --images imagenette2-320/val \\
        --held-out 0.3 --budget-mbit 40 --figure choice.png --out choice.csv

The model, weights and image options are those of ``lpe.tools.apply``. Every user error is one
line before any image is decoded.
"""

from __future__ import annotations

import argparse

from lpe.cli.flags import add_runtime_arguments, positive_int
from lpe.core.numerics import pin_cpu_numerics
from lpe.core.runtime import autocast, resolve_device, set_threads
from lpe.evaluation.choice import ACCOUNTINGS, SIZES, check_choice_arguments, choose, plot_choice
from lpe.evaluation.user_model import describe_policy
from lpe.formats.names import CATALOGUE
from lpe.formats.policy import policy_for
from lpe.tools.apply import load_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="timm model name, e.g. efficientnet_lite0")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="a local weights file (.safetensors, .pth)")
    source.add_argument("--no-pretrained", action="store_true", help="random weights (for tests)")
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        metavar="N",
        help="the head's classes when not the pretrained config's (with --weights)",
    )
    parser.add_argument("--images", required=True, help="image folder: ROOT/<class>/<image>")
    parser.add_argument(
        "--class-map",
        metavar="FILE",
        help="the model's class index of folders not named by WordNet id",
    )
    parser.add_argument(
        "--held-out",
        type=float,
        default=0.3,
        metavar="F",
        help="the share of the images (seeded) the choice is made on; the "
        "others are evaluated (default 0.3)",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=list(CATALOGUE),
        metavar="FORMAT",
        help=f"the formats to try (default every registered one: {', '.join(CATALOGUE)})",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(SIZES),
        metavar="M",
        help="the LPE-BSR ensemble sizes (default 2 5 10 20; RTN, M = 1, is always evaluated)",
    )
    parser.add_argument(
        "--budget-mbit",
        type=float,
        help="the most memory the choice may take, in Mbit (default: none)",
    )
    parser.add_argument(
        "--accounting",
        choices=list(ACCOUNTINGS),
        default="stored",
        help="the memory the budget counts: 'stored', the saved file (shared "
        "base, b + M bits per quantized weight), or 'paper', M full members "
        "(default stored)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the members' seed (default 0)")
    parser.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="PATTERN",
        help="also keep these tensors FP32 (fnmatch; repeatable)",
    )
    parser.add_argument("--quantize-head", action="store_true", help="quantize the classifier")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, help="evaluate a fixed random subset of this size")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes")
    parser.add_argument("--out", help="also write the table as csv")
    parser.add_argument("--figure", help="also draw NLL against memory into this .png")
    add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    from lpe.data.images import ImageFolderError, image_loader, model_transform, read_class_map

    pin_cpu_numerics()  # the suite's CPU paths for this program (lpe.core.numerics)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        formats = check_choice_arguments(
            args.formats, args.sizes, args.budget_mbit, args.accounting
        )
    except ValueError as err:
        parser.error(str(err))
    if not 0 < args.held_out < 1:
        parser.error(f"--held-out must be in (0, 1), got {args.held_out}")
    if args.figure and not args.figure.endswith(".png"):
        parser.error(f"--figure writes a .png, got {args.figure}")
    try:
        device = resolve_device(args.device)
    except RuntimeError as err:
        parser.error(str(err))
    set_threads(args.threads)
    model, _ = load_model(parser, args)
    transform = model_transform(model)
    try:
        classes = read_class_map(args.class_map) if args.class_map else None
        parts = {
            part: image_loader(
                args.images,
                transform,
                model.num_classes,
                args.batch_size,
                args.limit if part == "evaluated" else None,
                workers=args.workers,
                held_out=args.held_out,
                part=part,
                class_map=classes,
            )
            for part in ("held_out", "evaluated")
        }
    except ImageFolderError as err:
        parser.error(str(err))
    print(
        f"choosing on {len(parts['held_out'].labels)} held-out images of {args.images}, "
        f"reporting on the other {len(parts['evaluated'].labels)}; {len(formats)} formats x "
        f"(RTN + M = {max(args.sizes)}) member passes"
    )
    policy = policy_for(model, keep=args.keep, quantize_head=args.quantize_head)
    print(describe_policy(policy, model))
    with autocast(device, args.dtype):
        choice = choose(
            model,
            parts["held_out"],
            parts["evaluated"],
            formats,
            args.sizes,
            args.budget_mbit,
            args.accounting,
            args.seed,
            device=device,
            policy=policy,
        )
    print(choice.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for line in choice.lines():
        print(line)
    if args.out:
        from lpe.core.artifacts import write_with

        write_with(args.out, lambda tmp: choice.table.to_csv(tmp, index=False, float_format="%.6f"))
    if args.figure:
        plot_choice(choice, args.figure, title=f"{args.model} on {args.images}")
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
