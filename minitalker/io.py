"""Safe files: atomic writes and the one checkpoint format (safetensors + JSON config).

Anything we write (corpus shards, videos, checkpoints) goes to a temporary name in the same folder
and is renamed into place only when complete, so an interrupted run never leaves a file that looks
finished. Checkpoints never unpickle: tensors live in ``.safetensors``, everything else in JSON.

One key convention for every model's weights: ``model.<name>`` are the trained weights and
``ema.<name>`` their exponential moving average, when training keeps one (a trainer's ``last`` also
holds ``optim.*`` and ``trainer.step``). An exported checkpoint keeps one copy, in fp16, under its
own prefix (:func:`export_weights`); every loader takes the copy to run through :func:`model_weights`.
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
        raise FileNotFoundError(f"folder {path.parent} does not exist — create it first (mkdir -p {path.parent})")
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


def suffixed(path: str | os.PathLike, suffix: str) -> Path:
    """``path`` with ``suffix`` appended, never replacing: ``run_v0.5`` → ``run_v0.5.json`` (``Path.with_suffix``
    would give ``run_v0.json`` and overwrite another checkpoint)."""
    path = Path(path)
    return path.with_name(path.name + suffix)


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save ``<path>.safetensors`` (tensors) and ``<path>.json`` (config, step, metrics...) atomically.

    ``path`` is given without suffix. The JSON is written last, so its presence marks a complete
    checkpoint.
    """
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(suffixed(path, ".safetensors")) as tmp:
        save_file(tensors, str(tmp))
    write_json(suffixed(path, ".json"), meta)


def _checkpoint_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``<path>.json`` and ``<path>.safetensors`` (``path`` with or without either suffix); FileNotFoundError
    if one is missing."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    meta_path, st_path = suffixed(path, ".json"), suffixed(path, ".safetensors")
    if not meta_path.exists() or not st_path.exists():
        raise FileNotFoundError(
            f"no complete checkpoint at {path} (need {st_path.name} and {meta_path.name}) — "
            "train one (`minitalker train ...`) or check the path"
        )
    return meta_path, st_path


def _damaged(file: Path, e: Exception) -> ValueError:
    return ValueError(f"checkpoint file {file} is truncated or corrupt ({e}) — copy or export it again; if it is a "
                      "training run's own, start over (`minitalker train faces --fresh`; `train landmarks` without "
                      "`--resume`)")


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON half of a checkpoint (configs, step, metrics), without reading a tensor: cheap enough to
    check arguments against before any model loads."""
    meta_path, _ = _checkpoint_files(path)
    try:
        return json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _damaged(meta_path, e) from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` → (tensors, meta). No unpickling.

    A missing, truncated or corrupt file raises FileNotFoundError / ValueError naming it and the fix."""
    from safetensors import SafetensorError

    meta, (_, st_path) = load_meta(path), _checkpoint_files(path)
    try:
        return load_file(str(st_path), device=str(device)), meta
    except SafetensorError as e:
        raise _damaged(st_path, e) from None


def weights_prefix(tensors: dict[str, torch.Tensor], ema: bool = True) -> str:
    """Which copy of the weights to run: ``"ema."`` when the checkpoint holds one (and ``ema``), else ``"model."``.

    The EMA average is smoother than the last optimiser step, so it is what we evaluate and ship."""
    if ema and any(k.startswith("ema.") for k in tensors):
        return "ema."
    if not any(k.startswith("model.") for k in tensors):
        raise ValueError("this checkpoint holds no model.* or ema.* weights (an older export?) — export or train "
                         "it again with this version")
    return "model."


def model_weights(tensors: dict[str, torch.Tensor], ema: bool = True) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors → the ``state_dict`` to load: the copy :func:`weights_prefix` picks, prefix
    stripped, floating tensors in fp32 (exports are fp16; integer buffers stay as they are)."""
    prefix = weights_prefix(tensors, ema)
    return {k[len(prefix):]: v.float() if v.is_floating_point() else v for k, v in tensors.items()
            if k.startswith(prefix)}


def export_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A run's checkpoint tensors → what we ship: the copy :func:`weights_prefix` picks, under its own
    prefix, floating tensors in fp16 (half the size; the models run the same within their metrics' noise)."""
    prefix = weights_prefix(tensors)
    return {k: v.half() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}


AGENTS = {"landmarks": ("agent 1 (landmarks)", "--landmarks", "minitalker train landmarks"),
          "faces": ("agent 2 (faces)", "--faces", "minitalker train faces")}


def checkpoint_kind(meta: dict[str, Any]) -> str | None:
    """Whose weights a checkpoint's JSON describes: "faces" (agent 2), "landmarks" (agent 1), or None."""
    config = meta.get("model_config", {})
    if "agent" in config:
        return "faces"
    if meta.get("model_class") == "LandmarkCompletionTransformer":
        return "landmarks"
    return None


def check_kind(path: str | os.PathLike, meta: dict[str, Any], expected: str) -> None:
    """Raise ValueError when the checkpoint at ``path`` is not ``expected``'s ("landmarks" or "faces"),
    saying whose it is and where it goes."""
    kind = checkpoint_kind(meta)
    if kind != expected:
        whose = f"the weights of {AGENTS[kind][0]} (give it as {AGENTS[kind][1]})" if kind else "neither agent's weights"
        name, flag, command = AGENTS[expected]
        raise ValueError(f"checkpoint {path} holds {whose}, not those of {name} — as {flag} give a checkpoint "
                         f"written by `{command}`")
