"""Predictions of members and models: streamed evaluation, the predictions file, its writer.

Members are evaluated one at a time into a single model instance: only one member's weights are
alive at once besides that instance. A predictions file (``.npz``) holds, members first:

- ``log_probs``: float32 ``(M, N, C)`` log-softmax of each member;
- ``labels``: int64 ``(N,)``;
- ``member_bits``: int64 ``(M,)`` storage of each member;
- scalars ``backward_passes``, ``params``, ``model``, ``optimizer`` (how the weights were
  obtained), ``bits`` (0 for FP32 members), ``method``, ``seed``, and for low precision members
  ``format`` (the number format's name, :mod:`lpe.precision`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpe.artifacts import ArtifactError, read_manifest, write_with
from lpe.checkpoints import checkpoint_info, load_checkpoint
from lpe.inputs import open_data
from lpe.members import Member, load_member_of
from lpe.models import count_params
from lpe.precision import int_name


def batches(x, batch_size: int):
    """Input batches of a tensor (sliced) or of a loader of ``(inputs, labels)`` (image folders)."""
    if isinstance(x, torch.Tensor):
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size]
    else:
        for xb, _ in x:
            yield xb


def eval_inputs(data, split: str, info, batch_size: int, workers: int = 0):
    """``(inputs, labels)`` of ``split``: tensors of a data file, or a loader of an image folder.

    An image folder (the paper profile) holds one subfolder per split (``ROOT/val/<class>/...``);
    its images are preprocessed with the checkpoint's timm data config and streamed in batches.
    """
    data = open_data(data, info.model, info.num_classes, workers=workers,
                     input_shape=info.input_shape)  # fmt: skip
    return data.inputs(split, batch_size)


@torch.inference_mode()
def predict_log_probs(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
    eval_mode: bool = True,
) -> torch.Tensor:
    """``(N, ...) -> (N, C)`` float32 log-softmax of ``model``, on the CPU.

    In eval mode by default; ``eval_mode=False`` keeps the modules' modes as the caller set them
    (MC dropout keeps its dropout modules in train mode).
    """
    was_training = model.training
    if eval_mode:
        model.eval()
    out = [
        torch.log_softmax(model(xb.to(device)).float(), dim=-1).cpu()
        for xb in batches(x, batch_size)
    ]
    if eval_mode:
        model.train(was_training)
    return torch.cat(out)


# Members per batched call ("auto"): measured with benchmarks/ensemble_eval.py on a 2-core CPU,
# batching members with torch.func was slower than one at a time for every mini model (the forward
# is compute-bound there, and stacking multiplies the activations), so the CPU evaluates one at a
# time. On CUDA small models are launch-bound and batching is the usual win; that choice is not
# measured on this project's machine.
CUDA_BATCH_MAX_PARAMS = 2_000_000


CUDA_BATCH_MEMBERS = 8


def auto_members_per_call(model: torch.nn.Module, device: torch.device) -> int:
    if device.type == "cuda" and count_params(model) <= CUDA_BATCH_MAX_PARAMS:
        return CUDA_BATCH_MEMBERS
    return 1


def _unfuse_attention(model: torch.nn.Module) -> None:
    # timm's fused attention calls scaled_dot_product_attention, which has no vmap batching rule
    # (torch falls back to a per-member loop and warns); the explicit softmax(q k^T) v batches.
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False


@torch.inference_mode()
def predict_log_probs_batched(
    model: torch.nn.Module,
    states: list[dict[str, torch.Tensor]],
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """``(K, N, C)`` log-softmax of K weight sets in one vmapped call per input batch.

    ``model`` only supplies the architecture (``torch.func.functional_call``); it is not modified
    apart from switching its attention to the explicit form.
    """
    _unfuse_attention(model)
    model.eval()
    stacked = {n: torch.stack([s[n] for s in states]).to(device) for n in states[0]}

    def forward(params, xb):
        return torch.func.functional_call(model, params, (xb,))

    batched = torch.vmap(forward, in_dims=(0, None))
    out = [
        torch.log_softmax(batched(stacked, xb.to(device)).float(), -1).cpu()
        for xb in batches(x, batch_size)
    ]
    return torch.cat(out, dim=1)


def evaluate_members(
    model: torch.nn.Module,
    members: Iterable[Member],
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
    members_per_call: int | str = "auto",
) -> tuple[torch.Tensor, list[int]]:
    """Stream ``members`` through ``model``: ``(M, N, C)`` log-probs and each member's bits.

    With one member per call (the CPU default) each member is written into ``model`` in place
    (``Member.load_into``), so memory holds one model plus one member's codes, never M models.
    With K > 1, K members are dequantized and evaluated in one batched call.
    """
    if members_per_call == "auto":
        members_per_call = auto_members_per_call(model, device)
    if not isinstance(members_per_call, int) or members_per_call < 1:
        raise ValueError(f"members_per_call must be 'auto' or >= 1, got {members_per_call!r}")
    log_probs, bits, pending = [], [], []
    for member in members:
        bits.append(member.bits)
        if members_per_call == 1:
            member.load_into(model)
        else:
            pending.append(member.state_dict())
        del member  # freed before the next one is read: at most one member's codes alive
        if members_per_call == 1:
            log_probs.append(predict_log_probs(model, x, batch_size, device)[None])
        elif len(pending) == members_per_call:
            log_probs.append(predict_log_probs_batched(model, pending, x, batch_size, device))
            pending = []
    if pending:
        log_probs.append(predict_log_probs_batched(model, pending, x, batch_size, device))
    return torch.cat(log_probs), bits


def predict_members(checkpoint, members_dir, x, batch_size, device, members_per_call="auto"):
    """Evaluate each member file of ``members_dir`` in turn (read lazily, one at a time).

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
    files = tqdm(manifest["files"], desc=f"predict {Path(members_dir).name}", mininterval=5)
    members = (_listed_member(members_dir, name, manifest, checkpoint, info) for name in files)
    log_probs, bits = evaluate_members(model, members, x, batch_size, device, members_per_call)
    return log_probs, np.asarray(bits, dtype=np.int64), manifest, info


def member_run(manifest: dict) -> dict:
    """The scalars a members folder's predictions file records: method, format, bits, seed."""
    return {
        "method": manifest["method"],
        "format": listed_format(manifest),
        "bits": manifest["bits"],
        "seed": manifest["seed"],
    }


def listed_format(manifest: dict) -> str:
    """The format a manifest names; older manifests name INT-b by its bits only."""
    return manifest.get("format", int_name(manifest["bits"]))


def _listed_member(folder, name, manifest, checkpoint, info) -> Member:
    """A manifest's member file: made from ``checkpoint``, of the manifest's method and format."""
    path = Path(folder) / name
    member = load_member_of(path, checkpoint, info.sha256)
    listed = listed_format(manifest)
    said = (manifest["method"], listed, manifest["bits"])
    if (member.method, member.fmt.name, member.fmt.code_bits) != said:
        raise ArtifactError(
            f"member file {path} is {member.method} {member.fmt.label} ({member.fmt.code_bits}"
            f"-bit codes), but {folder}'s manifest says {manifest['method']} {listed} "
            f"({manifest['bits']}-bit codes); delete it and rerun"
        )
    return member


def predict_fp32(checkpoint, x, batch_size, device):
    state, info = load_checkpoint(checkpoint)
    model = info.build().to(device)
    model.load_state_dict(state, strict=True)
    bits = sum(32 * t.numel() for t in state.values())
    return predict_log_probs(model, x, batch_size, device)[None], np.asarray([bits]), info


def write_predictions(out, log_probs, labels, member_bits, info, run: dict, params=None) -> None:
    """The predictions file every ensemble method ends in (see the module docstring).

    ``params`` defaults to the parameter count of ``info.build()``.
    """
    arrays = {
        "log_probs": log_probs.numpy().astype(np.float32),  # (M, N, C)
        "labels": labels.numpy(),  # (N,)
        "member_bits": np.asarray(member_bits, dtype=np.int64),  # (M,)
        "backward_passes": np.asarray(info.backward_passes),
        "params": np.asarray(count_params(info.build()) if params is None else params),
        "model": np.asarray(info.model),
        "optimizer": np.asarray(info.optimizer),
        **{k: np.asarray(v) for k, v in run.items()},
    }
    write_with(out, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    print(f"wrote {out}: {log_probs.shape[0]} members x {log_probs.shape[1]} points")
