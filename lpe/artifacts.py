"""Safe reading and writing of the suite's files.

Every artifact is written atomically (a temporary name in the same folder, then ``os.replace``),
so an interrupted run never leaves a half-written file under the final name. Tensor files are
safetensors (no code execution on load) carrying a SHA-256 of their tensors in the metadata, so a
truncated or corrupted file is refused with a message that names it instead of giving a silently
wrong number.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

if TYPE_CHECKING:  # torch is imported where tensors are handled: the report stages never need it
    import torch

CHECKSUM_KEY = "lpe_sha256"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ArtifactError(RuntimeError):
    """A file the suite wrote cannot be trusted (missing, truncated, corrupted, wrong kind)."""


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder next to ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Atomically write ``path`` with ``writer(tmp_path)`` (for libraries that take a path)."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of the tensors, in sorted name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> None:
    """Atomically write a safetensors file whose metadata includes the tensors' checksum."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**metadata, CHECKSUM_KEY: tensors_sha256(tensors)}
    write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def read_metadata(path: str | os.PathLike, what: str) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors."""
    path = Path(path)
    _require_file(path, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error type for bad headers
        raise ArtifactError(_unreadable(path, what, err)) from err


def load_tensors(path: str | os.PathLike, what: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_tensors`; verify its checksum."""
    path = Path(path)
    _require_file(path, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except Exception as err:
        raise ArtifactError(_unreadable(path, what, err)) from err
    expected = metadata.get(CHECKSUM_KEY)
    if expected is None or tensors_sha256(tensors) != expected:
        raise ArtifactError(
            _unreadable(path, what, "its tensors do not match the checksum written with them")
        )
    return tensors, metadata


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ArtifactError(f"{what} not found: {path}. Run the workflow to create it.")


def _unreadable(path: Path, what: str, reason) -> str:
    return (
        f"{what} {path} is truncated or corrupted ({reason}). Delete it and rerun the workflow "
        "(snakemake regenerates it from its inputs)."
    )
