"""The ``predict`` stage: member log-probabilities on a data split, as one predictions file.

Members are evaluated one at a time into a single model instance: only one member's weights are
alive at once besides that instance. The output ``.npz`` holds, members first:

- ``log_probs``: float32 ``(M, N, C)`` log-softmax of each member;
- ``labels``: int64 ``(N,)``;
- ``member_bits``: int64 ``(M,)`` storage of each member;
- scalars ``backward_passes``, ``params``, ``bits`` (0 for FP32), ``method``, ``seed``.

Usage (FP32 model): ``python -m lpe.predict --checkpoint CKPT --data DATA --out OUT.npz``;
(low precision members): add ``--members DIR`` written by ``python -m lpe.generate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpe.artifacts import write_with
from lpe.checkpoints import checkpoint_info, load_checkpoint
from lpe.data import SPLITS, load_splits
from lpe.generate import read_manifest
from lpe.members import load_member
from lpe.models import count_params
from lpe.runtime import resolve_device, set_threads


@torch.inference_mode()
def predict_log_probs(
    model: torch.nn.Module, x: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    """``(N, ...) -> (N, C)`` float32 log-softmax of ``model`` in eval mode, on the CPU."""
    was_training = model.training
    model.eval()
    out = [
        torch.log_softmax(model(x[i : i + batch_size].to(device)).float(), dim=-1).cpu()
        for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


def predict_members(checkpoint, members_dir, x, batch_size, device):
    """Evaluate each member file of ``members_dir`` in turn.

    Returns log-probs ``(M, N, C)``, member bits ``(M,)``, the manifest and the checkpoint info.
    """
    info = checkpoint_info(checkpoint)
    manifest = read_manifest(members_dir)
    if manifest["checkpoint_sha256"] != info.sha256:
        raise ValueError(
            f"members in {members_dir} were made from another checkpoint than {checkpoint}; "
            "delete the folder and rerun the workflow"
        )
    model = info.build().to(device)  # the one instance every member is loaded into
    log_probs, bits = [], []
    for name in tqdm(manifest["files"], desc=f"predict {Path(members_dir).name}", mininterval=5):
        member, meta = load_member(Path(members_dir) / name)
        model.load_state_dict(member.state_dict(), strict=True)
        del member  # keep at most one member's tensors alive
        log_probs.append(predict_log_probs(model, x, batch_size, device))
        bits.append(int(meta["memory_bits"]))
    return torch.stack(log_probs), np.asarray(bits, dtype=np.int64), manifest, info


def predict_fp32(checkpoint, x, batch_size, device):
    state, info = load_checkpoint(checkpoint)
    model = info.build().to(device)
    model.load_state_dict(state, strict=True)
    bits = sum(32 * t.numel() for t in state.values())
    return predict_log_probs(model, x, batch_size, device)[None], np.asarray([bits]), info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--members", help="folder of member files; omit for the FP32 model")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    splits = load_splits(args.data)
    x, labels = splits.x[args.split], splits.y[args.split]
    if args.members:
        log_probs, bits, manifest, info = predict_members(
            args.checkpoint, args.members, x, args.batch_size, device
        )
        run = {"method": manifest["method"], "bits": manifest["bits"], "seed": manifest["seed"]}
    else:
        log_probs, bits, info = predict_fp32(args.checkpoint, x, args.batch_size, device)
        run = {"method": "fp32", "bits": 0, "seed": 0}
    arrays = {
        "log_probs": log_probs.numpy().astype(np.float32),  # (M, N, C)
        "labels": labels.numpy(),  # (N,)
        "member_bits": bits,  # (M,)
        "backward_passes": np.asarray(info.backward_passes),
        "params": np.asarray(count_params(info.build())),
        "model": np.asarray(info.model),
        **{k: np.asarray(v) for k, v in run.items()},
    }
    write_with(args.out, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    print(f"wrote {args.out}: {log_probs.shape[0]} members x {log_probs.shape[1]} points")


if __name__ == "__main__":
    main()
