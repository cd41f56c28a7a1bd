"""Presets, devices and paths shared by every room of the package.

Every component has a dataclass config with two presets:

* ``fast``: small enough to train and run on a 2-core laptop CPU in minutes (CI runs this one);
* ``full``: the sizes one would use on a GPU.

The preset is chosen by the ``MINITALKER_PRESET`` environment variable; when it is unset we pick
``full`` if a CUDA GPU is present and ``fast`` otherwise. Every config checks its fields in
``__post_init__`` (with the ``check_*`` helpers below), so a bad value fails where it is given,
with a message that says what to give instead, not deep inside a training run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import torch

PRESETS = ("fast", "full")
REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"  # shipped, small files: landmarks of bundled photos, checkpoints


def preset_name(name: str | None = None) -> str:
    """Resolve a preset name: the argument, else ``$MINITALKER_PRESET``, else by hardware."""
    name = name or os.environ.get("MINITALKER_PRESET") or ("full" if torch.cuda.is_available() else "fast")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {PRESETS} (argument or MINITALKER_PRESET)")
    return name


def default_device() -> torch.device:
    """``cuda`` when a GPU is present, ``cpu`` otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cache_dir() -> Path:
    """Where generated data lives (git-ignored): ``$MINITALKER_CACHE`` or ``data/cache``."""
    return Path(os.environ.get("MINITALKER_CACHE", DATA_DIR / "cache"))


C = TypeVar("C", bound="PresetConfig")


class PresetConfig:
    """Mixin for dataclass configs: ``Cfg.preset("fast")``, ``Cfg.from_dict(d)``, ``cfg.to_dict()``.

    A subclass defines ``fast()`` and ``full()`` classmethods returning instances.
    """

    @classmethod
    def preset(cls: type[C], name: str | None = None) -> C:
        return getattr(cls, preset_name(name))()

    @classmethod
    def fast(cls: type[C]) -> C:
        return cls()

    @classmethod
    def full(cls: type[C]) -> C:
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Rebuild a config; unknown keys are an error (they mean another version or class)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}: was this saved by another version?")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def check_positive(cfg: Any, *names: str) -> None:
    """Raise ValueError unless each named field of ``cfg`` is > 0."""
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be > 0; got {value!r}")


def check_non_negative(cfg: Any, *names: str) -> None:
    """Raise ValueError unless each named field of ``cfg`` is ≥ 0 (0 turns the thing off)."""
    for name in names:
        value = getattr(cfg, name)
        if not value >= 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be ≥ 0 (0 turns it off); got {value!r}")


def check_fraction(cfg: Any, *names: str) -> None:
    """Raise ValueError unless each named field of ``cfg`` is a probability or fraction in [0, 1]."""
    for name in names:
        value = getattr(cfg, name)
        if not 0 <= value <= 1:
            raise ValueError(f"{type(cfg).__name__}.{name} is a fraction: give a number in [0, 1]; got {value!r}")


def check_choice(cfg: Any, name: str, choices: tuple) -> None:
    """Raise ValueError unless field ``name`` of ``cfg`` is one of ``choices``."""
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{type(cfg).__name__}.{name} must be one of {choices}; got {value!r}")
