"""Safe files: atomic writes and the one checkpoint format (safetensors + JSON config).

Anything we write (corpus shards, videos, checkpoints) goes to a temporary name in the same folder
and is renamed into place only when complete, so an interrupted run never leaves a file that looks
finished. Checkpoints never unpickle: tensors live in ``.safetensors``, everything else in JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"folder {path.parent} does not exist: create it first (mkdir -p {path.parent})")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indent 2, keys in insertion order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save ``<path>.safetensors`` (tensors) and ``<path>.json`` (config, step, metrics...) atomically.

    ``path`` is given without suffix. The JSON is written last, so its presence marks a complete
    checkpoint.
    """
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp))
    write_json(path.with_suffix(".json"), meta)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` → (tensors, meta). No unpickling."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    meta_path, st_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not meta_path.exists() or not st_path.exists():
        raise FileNotFoundError(
            f"no complete checkpoint at {path} (need {st_path.name} and {meta_path.name}): "
            "train one (`minitalker train ...`) or check the path"
        )
    return load_file(str(st_path), device=str(device)), json.loads(meta_path.read_text())
