"""Safe reading and writing of the suite's files.

Every artifact is written atomically (a temporary name in the same folder, then ``os.replace``),
so an interrupted run never leaves a half-written file under the final name. Tensor files are
safetensors (no code execution on load) carrying a SHA-256 of their tensors in the metadata, so a
truncated or corrupted file is refused with a message that names it instead of giving a silently
wrong number. A second SHA-256 covers the metadata itself (model, backward passes, bits, method,
the source checkpoint's hash), and a folder's ``manifest.json`` carries one over its content, so
an edited label or budget is refused too: these are integrity checks against accidents and
hand edits, not signatures.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

if TYPE_CHECKING:  # torch is imported where tensors are handled: the report stages never need it
    import torch

CHECKSUM_KEY = "lpe_sha256"  # over the tensors: also a checkpoint's identity in its members
METADATA_CHECKSUM_KEY = "lpe_metadata_sha256"  # over every other metadata entry
MANIFEST = "manifest.json"
MANIFEST_CHECKSUM_KEY = "manifest_sha256"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ArtifactError(RuntimeError):
    """A file the suite wrote cannot be trusted (missing, truncated, corrupted, wrong kind)."""


# A temporary is named after its target, this machine and its writer's process, so that a writer
# can tell its target's temporaries left by a killed writer (at paper scale a member folder is
# gigabytes) from those of a writer still running (two jobs may fill one image cache entry).
def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.tmp-{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` whose writer, on this machine, is gone (a killed job);
    those of a running writer and of other machines stay. Returns what was removed."""
    path = Path(path)
    prefix = _temporary_prefix(path)
    removed = []
    for stale in path.parent.glob(glob.escape(prefix) + "*"):
        pid = stale.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def _fresh_temporary_prefix(path: Path) -> str:
    """A new temporary's prefix, after removing what killed writers left of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(path):
        print(f"removed {stale}, left by a writer that was killed", file=sys.stderr)
    return f"{_temporary_prefix(path)}{os.getpid()}-"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    prefix = _fresh_temporary_prefix(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
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
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_fresh_temporary_prefix(path)))
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
    meta[METADATA_CHECKSUM_KEY] = _json_sha256(meta)
    write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _json_sha256(obj: Mapping) -> str:
    """SHA-256 of a mapping's canonical JSON, without its own checksum entries."""
    own = (METADATA_CHECKSUM_KEY, MANIFEST_CHECKSUM_KEY)
    body = {k: v for k, v in obj.items() if k not in own}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _verified_metadata(path: Path, what: str, metadata: dict[str, str]) -> dict[str, str]:
    if metadata.get(METADATA_CHECKSUM_KEY) != _json_sha256(metadata):
        raise ArtifactError(
            f"{what} {path}: its metadata does not match the checksum written with it (edited "
            "by hand, or written by an older version of the suite). Delete it and rerun the "
            "workflow (snakemake regenerates it from its inputs)."
        )
    return metadata


def read_metadata(path: str | os.PathLike, what: str) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors."""
    path = Path(path)
    _require_file(path, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error type for bad headers
        raise ArtifactError(_unreadable(path, what, err)) from err
    return _verified_metadata(path, what, metadata)


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
    return tensors, _verified_metadata(path, what, metadata)


def write_manifest(folder: str | os.PathLike, manifest: Mapping) -> None:
    """``folder/manifest.json`` with a checksum over its content (call inside ``atomic_dir``)."""
    body = {**manifest, MANIFEST_CHECKSUM_KEY: _json_sha256(manifest)}
    (Path(folder) / MANIFEST).write_text(json.dumps(body, indent=2) + "\n")


def read_manifest(folder: str | os.PathLike, what: str = "member folder") -> dict:
    """``folder``'s manifest, refusing a missing (incomplete folder), corrupted or edited one, and
    any file entry that points outside the folder."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {folder}: the {what} is incomplete; rerun.")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path} is corrupted ({err}); delete {folder} and rerun.") from err
    if not isinstance(manifest, dict) or manifest.get(MANIFEST_CHECKSUM_KEY) != _json_sha256(
        manifest
    ):
        raise ArtifactError(
            f"{path} does not match the checksum written with it (edited by hand, or written by "
            f"an older version of the suite); delete {folder} and rerun."
        )
    names = list(manifest.get("files", []))
    names += [entry["file"] for entry in manifest.get("sources", [])]
    outside = [n for n in names if not _plain_name(n)]
    if outside:
        raise ArtifactError(f"{path} lists files outside {folder}: {outside}")
    return manifest


def _plain_name(name) -> bool:
    """A file name in the folder itself: no separator, no '..', not hidden."""
    return isinstance(name, str) and Path(name).name == name and not name.startswith(".")


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ArtifactError(f"{what} not found: {path}. Run the workflow to create it.")


def _unreadable(path: Path, what: str, reason) -> str:
    return (
        f"{what} {path} is truncated or corrupted ({reason}). Delete it and rerun the workflow "
        "(snakemake regenerates it from its inputs)."
    )
