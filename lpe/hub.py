"""The ``download_checkpoint`` stage: a pretrained timm checkpoint as an LPE checkpoint.

The paper profile starts from published checkpoints instead of training. This stage fetches one
through timm (its Hugging Face hub download, into ``--cache``), and writes it as the suite's
checkpoint format (``lpe.checkpoints``): the FP32 weights, the timm name, the number of classes,
the input shape of the model's data config, the source, and a SHA-256 of the tensors. The
pre-training budget is unknown, so ``backward_passes`` is 0 ("not counted here").

The converted checkpoint is kept in ``--cache`` as ``<name>.safetensors``: when it is there (and
its checksum holds) it is used as is, without network access, so a machine without network runs
the paper profile after the file has been copied into the cache. Offline with an empty cache, or
with a name timm does not know, the stage stops with a message saying what to download and where
to put it.

Usage: ``python -m lpe.hub --name vit_base_patch16_224.augreg_in21k_ft_in1k --cache ~/.cache/lpe
--out work/paper/checkpoints/vit_base_patch16_224.augreg_in21k_ft_in1k.safetensors``
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from lpe.artifacts import ArtifactError, atomic_path
from lpe.checkpoints import checkpoint_info, load_checkpoint, save_checkpoint


class DownloadError(RuntimeError):
    pass


def cached_path(cache: str | Path, name: str) -> Path:
    return Path(cache).expanduser() / f"{name}.safetensors"


def fetch_timm(name: str, cache: str | Path) -> torch.nn.Module:
    """The pretrained timm model ``name``, downloaded into ``cache`` (network needed)."""
    import timm

    if not timm.is_model(name.split(".")[0]):
        close = timm.list_models(f"*{name.split('.')[0].split('_')[0]}*")[:8]
        raise DownloadError(f"timm has no model {name!r}; close names: {close}")
    try:
        return timm.create_model(name, pretrained=True, cache_dir=str(Path(cache).expanduser()))
    except Exception as err:  # hub, network and file errors all end here
        raise DownloadError(
            f"cannot download {name} ({type(err).__name__}: {err}). Offline? On a machine with "
            f"network run `python -m lpe.hub --name {name} --cache DIR --out /tmp/x.safetensors` "
            f"and copy DIR/{name}.safetensors to {cached_path(cache, name)}"
        ) from err


def describe(model: torch.nn.Module, name: str) -> dict:
    config = model.pretrained_cfg
    return {
        "model": name,
        "num_classes": model.num_classes,
        "input_shape": list(config.get("input_size", (3, 224, 224))),
        "optimizer": "pretrained",
        "backward_passes": 0,  # the pre-training budget is not counted here
        "source": f"timm:{config.get('hf_hub_id') or config.get('url') or name}",
    }


def download(name: str, cache: str | Path, out: str | Path, fetch=fetch_timm) -> Path:
    """Write checkpoint ``out`` for ``name``, from the cache if there, else via ``fetch``."""
    cached = cached_path(cache, name)
    if cached.exists():
        info = checkpoint_info(cached)
        load_checkpoint(cached)  # verifies the checksum: a damaged cache file is refused
        if info.model != name:
            raise ArtifactError(f"{cached} holds {info.model}, not {name}; delete it")
        print(f"{name}: using the cached {cached} (no network)")
    else:
        model = fetch(name, cache)
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(cached, model, describe(model, name))
        print(f"{name}: downloaded and cached as {cached}")
    with atomic_path(out) as tmp:
        shutil.copyfile(cached, tmp)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="timm model name with its pretrained tag")
    parser.add_argument("--cache", required=True, help="folder of downloaded checkpoints")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        download(args.name, args.cache, args.out)
    except DownloadError as err:
        raise SystemExit(f"error: {err}") from None
    info = checkpoint_info(args.out)
    print(f"wrote {args.out}: {info.model}, sha256 {info.sha256[:16]}...")


if __name__ == "__main__":
    main()
