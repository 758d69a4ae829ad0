"""Model registry: name → class (+ hyper-parameter preset), strict hyper-parameter validation, model building.

Example::

    from video_prediction_tools.models.registry import known_models, resolve_hparams, build_model
    known_models()                       # ['convLSTM', 'convLSTM_gan', 'mcnet', 'ours_gan', 'ours_vae_l1', 'savp', 'vae']
    hparams = resolve_hparams("convLSTM", {"lr": 0.0005})      # defaults + user values, type-checked
    model = build_model("convLSTM", hparams, frame_shape=(56, 92, 3))
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from ..utils.errors import UserError

#: modules that define models; each calls :func:`register` at import time
_MODEL_MODULES = ("convlstm", "convlstm_gan", "vae", "mcnet", "savp")


@dataclass
class _Entry:
    cls: type
    preset: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}
_loaded = False


def register(name: str, preset: dict[str, Any] | None = None):
    """Class decorator: register ``cls`` under ``name``; ``preset`` overrides its default hyper-parameters
    (this is how ``ours_gan`` and ``ours_vae_l1`` are SAVP with other defaults)."""

    def decorator(cls):
        _REGISTRY[name] = _Entry(cls, dict(preset or {}))
        return cls

    return decorator


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _MODEL_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        _loaded = True


def known_models() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    _load()
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_model_class(name: str) -> type:
    return _entry(name).cls


def default_hparams(name: str) -> dict[str, Any]:
    """The defaults of model ``name`` (class defaults updated by the registry preset)."""
    entry = _entry(name)
    hparams = entry.cls.default_hparams()
    hparams.update(entry.preset)
    return hparams


def _check_type(model: str, key: str, value: Any, default: Any, source: str, accepted: str = "") -> Any:
    def fail(expected: str):
        raise UserError(f"{source}: hyper-parameter {key!r} of model {model} must be {expected}, got {value!r}"
                        + (f" (accepted keys: {accepted})" if accepted else ""))

    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            fail("a string")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            fail(f"a list of {len(default)} values")
        return [_check_type(model, f"{key}[{i}]", v, d, source, accepted)
                for i, (v, d) in enumerate(zip(value, default))]
    return value


def resolve_hparams(name: str, user: dict[str, Any] | None, source: str = "model hparams") -> dict[str, Any]:
    """Defaults of ``name`` overridden by ``user``; an unknown key or a wrong type is a :class:`UserError`
    naming the key and the accepted keys. ``source`` names the file in messages."""
    hparams = default_hparams(name)
    if user is None:
        return hparams
    if not isinstance(user, dict):
        raise UserError(f"{source}: expected a JSON object of hyper-parameters, got {type(user).__name__}")
    for key, value in user.items():
        if key not in hparams:
            raise UserError(f"{source}: unknown hyper-parameter {key!r} for model {name}; accepted keys: "
                            f"{', '.join(sorted(hparams))}")
        hparams[key] = _check_type(name, key, value, hparams[key], source, accepted=", ".join(sorted(hparams)))
    return hparams


def build_model(name: str, hparams: dict[str, Any] | None, frame_shape: tuple[int, int, int], build: bool = True):
    """Instantiate model ``name`` with validated ``hparams`` for frames ``(H, W, C)``; ``build`` creates every
    variable so weights can be loaded and counted right away."""
    resolved = resolve_hparams(name, hparams)
    try:
        model = get_model_class(name)(resolved, frame_shape=tuple(frame_shape), name=name)
    except ValueError as err:  # inconsistent hyper-parameters (e.g. sequence_length <= context_frames)
        raise UserError(f"model {name}: {err}") from None
    if build:
        model.build_variables()
    return model
