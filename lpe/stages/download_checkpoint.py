"""The ``download_checkpoint`` stage: a pretrained timm checkpoint as an LPE checkpoint.

The paper profile starts from published checkpoints instead of training. This stage fetches one
through timm (its Hugging Face hub download, into ``--cache``), and writes it as the suite's
checkpoint format (``lpe.models.checkpoints``): the FP32 weights, the timm name, the number of
classes, the input shape of the model's data config, the source, and a SHA-256 of the tensors. The
pre-training budget is unknown, so ``backward_passes`` is 0 ("not counted here").

A ``NAME+zeroshot`` model (``lpe.models.zeroshot``) is timm's CLIP image tower ``NAME`` with a class
head made by the text tower of ``--openclip ARCH PRETRAINED`` (OpenCLIP, downloaded likewise).

The converted checkpoint is kept in ``--cache`` as ``<name>.safetensors``: when it is there (and
its checksum holds) it is used as is, without network access, so a machine without network runs
the paper profile after the file has been copied into the cache. Offline with an empty cache, or
with a name timm does not know, the stage stops with a message saying what to download and where
to put it.

Usage: ``python -m lpe.stages.download_checkpoint --name vit_base_patch16_224.augreg_in21k_ft_in1k
--cache ~/.cache/lpe
--out work/paper/checkpoints/vit_base_patch16_224.augreg_in21k_ft_in1k.safetensors``
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from lpe.cli.jobs import from_cli
from lpe.core.artifacts import ArtifactError, atomic_path
from lpe.core.jobs import Job, setting
from lpe.models.checkpoints import checkpoint_info, load_checkpoint, save_checkpoint
from lpe.models.factory import unknown_timm_model
from lpe.models.zeroshot import SUFFIX, fetch_zeroshot, tower_name


class DownloadError(RuntimeError):
    pass


def cached_path(cache: str | Path, name: str) -> Path:
    return Path(cache).expanduser() / f"{name}.safetensors"


def fetch_timm(name: str, cache: str | Path) -> torch.nn.Module:
    """The pretrained timm model ``name``, downloaded into ``cache`` (network needed)."""
    import timm

    if problem := unknown_timm_model(name):
        raise DownloadError(problem)
    try:
        return timm.create_model(name, pretrained=True, cache_dir=str(Path(cache).expanduser()))
    except Exception as err:  # hub, network and file errors all end here
        raise DownloadError(
            f"cannot download {name} ({type(err).__name__}: {err}). Offline? On a machine with "
            f"network run `python -m lpe.stages.download_checkpoint --name {name} --cache DIR "
            f"--out /tmp/x.safetensors` "
            f"and copy DIR/{name}.safetensors to {cached_path(cache, name)}"
        ) from err


def fetch_zeroshot_or_explain(name: str, cache, openclip) -> torch.nn.Module:
    """The zero-shot model of ``name`` (``lpe.models.zeroshot``), or why it cannot be had."""
    if problem := unknown_timm_model(tower_name(name)):
        raise DownloadError(problem)
    try:
        return fetch_zeroshot(name, openclip, Path(cache).expanduser())
    except Exception as err:
        raise DownloadError(
            f"cannot download {name} (the timm tower {tower_name(name)} and OpenCLIP "
            f"{' '.join(openclip)}: {type(err).__name__}: {err}). Offline? On a machine with "
            f"network run `python -m lpe.stages.download_checkpoint --name {name} "
            f"--openclip {' '.join(openclip)} "
            f"--cache DIR --out /tmp/x.safetensors` and copy DIR/{name}.safetensors to "
            f"{cached_path(cache, name)}"
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


@dataclass(frozen=True, kw_only=True)
class DownloadJob(Job):
    """One checkpoint to fetch (or take from the cache) and write."""

    name: str = setting(help="timm model name with its pretrained tag")
    cache: str = setting(
        "~/.cache/lpe", "folder of downloaded checkpoints", config="checkpoints.cache"
    )
    out: str = setting(help="the checkpoint written")
    openclip: tuple[str, ...] = setting(
        (),
        "for NAME+zeroshot: the OpenCLIP model (ARCH PRETRAINED) whose text tower makes the "
        "class head",
        config="job.openclip",
        from_config=lambda tower: tuple(tower or ()),  # the rule's [ARCH, TAG], or none
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name.endswith(SUFFIX) != bool(self.openclip) or len(self.openclip) not in (0, 2):
            raise ValueError(
                "--openclip ARCH PRETRAINED goes with a NAME+zeroshot model, and only then"
            )


def run(job: DownloadJob) -> None:
    """Write the job's checkpoint. Offline, or for a name timm does not know, the stage stops
    with one line saying what to download and where (``SystemExit``: the stage's command line;
    a program calls :func:`download`, which raises ``DownloadError``)."""
    zeroshot = job.name.endswith(SUFFIX)
    fetch = partial(fetch_zeroshot_or_explain, openclip=job.openclip) if zeroshot else fetch_timm
    try:
        download(job.name, job.cache, job.out, fetch)
    except DownloadError as err:
        raise SystemExit(f"error: {err}") from None
    info = checkpoint_info(job.out)
    print(f"wrote {job.out}: {info.model}, sha256 {info.sha256[:16]}...")


def main(argv: list[str] | None = None) -> None:
    run(from_cli(DownloadJob, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
