"""Model registry: name → class (+ hyper-parameter preset), the models' traits, strict hyper-parameter validation,
model building.

Models are found, not listed: every module of the ``models`` package (every directory of its ``__path__``) is
read as text and each class decorated with ``@register("<name>")`` is a model. Listing the names
(:func:`known_models`) and reading a model's traits (:func:`model_traits`: whether it is stochastic, from the
``stochastic = ...`` class attribute of its class or of its bases in the package) import nothing, so no
TensorFlow; a model's module is imported when the model is first used. A model's hyper-parameter template is
``templates/hparams/<dataset>/<name>/model_hparams_template.json`` (:func:`hparams_template_path`) when that file
exists, else its :func:`default_hparams` (:func:`template_hparams`).

Example::

    from video_prediction_tools.models.registry import (build_model, known_models, model_traits, models_with_template,
                                                        resolve_hparams)
    known_models()   # ['convLSTM', 'convLSTM_gan', 'mcnet', 'ours_gan', 'ours_vae_l1', 'savp', 'simvp', 'tau', 'vae']
    model_traits("savp").stochastic                             # True
    models_with_template("moving_mnist")                        # ['convLSTM', 'simvp', 'tau']
    hparams = resolve_hparams("convLSTM", {"lr": 0.0005})      # defaults + user values, type- and range-checked
    model = build_model("convLSTM", hparams, frame_shape=(56, 92, 3))
"""
from __future__ import annotations

import ast
import math
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.errors import UserError
from ..utils.io import read_json
from ..utils.settings import templates_dir
from ..utils.source_scan import look_up

#: hyper-parameters that are counts (>= 1); counts for which 0 means "none" (``nz``: no latent variables,
#: ``num_transformed_images``) are checked by their models
COUNT_HPARAMS = frozenset({"batch_size", "max_epochs", "context_frames", "sequence_length", "num_features",
                           "filter_size", "df_dim", "gf_dim", "ndf", "ngf", "nef", "n_layers", "clip_length",
                           "hid_S", "hid_T", "N_S", "N_T"})
#: hyper-parameters that are rates (> 0)
RATE_HPARAMS = frozenset({"lr"})
#: accepted values of string hyper-parameters with a fixed list
HPARAM_CHOICES: dict[str, tuple[str, ...]] = {"loss_fun": ("mse", "cross_entropy"),
                                              "translator": ("gsta", "incepu"),
                                              "lr_schedule": ("constant", "cosine")}
#: hints for values of the original system that are no longer accepted
_RENAMED_VALUES = {("loss_fun", "rmse"): "the original computed the mean squared error under that name; write "
                                         "\"mse\" for the same loss"}


@dataclass
class _Entry:
    cls: type
    preset: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, preset: dict[str, Any] | None = None):
    """Class decorator: register ``cls`` under ``name``; ``preset`` overrides its default hyper-parameters
    (this is how ``ours_gan`` and ``ours_vae_l1`` are SAVP with other defaults)."""

    def decorator(cls):
        _REGISTRY[name] = _Entry(cls, dict(preset or {}))
        return cls

    return decorator


@dataclass(frozen=True)
class _ModuleSource:
    """What the source of one model module says, read without importing it."""

    #: class name → (names of its bases, value of its ``stochastic`` class attribute or None when it sets none)
    classes: dict[str, tuple[list[str], ast.expr | None]]
    #: name bound in the module → (module of the package it was imported from, name there): ``from .x import C``
    imports: dict[str, tuple[str, str]]
    #: ``(model name, class name)`` of every ``@register("<name>", ...)`` decorator
    registrations: list[tuple[str, str]]


def _stochastic_value(node: ast.ClassDef) -> ast.expr | None:
    """The value of a ``stochastic = ...`` (or ``stochastic: ClassVar[bool] = ...``) in a class body."""
    for statement in node.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else \
            [statement.target] if isinstance(statement, ast.AnnAssign) and statement.value is not None else []
        if any(getattr(target, "id", None) == "stochastic" for target in targets):
            return statement.value
    return None


def _registrations(node: ast.ClassDef) -> list[tuple[str, str]]:
    return [(str(decorator.args[0].value), node.name) for decorator in node.decorator_list
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "register"
            and decorator.args and isinstance(decorator.args[0], ast.Constant)]


def _read_module(source: str) -> _ModuleSource:
    tree = ast.parse(source)
    classes, imports, registrations = {}, {}, []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = ([base.id for base in node.bases if isinstance(base, ast.Name)],
                                  _stochastic_value(node))
            registrations += _registrations(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            imports.update({alias.asname or alias.name: (node.module, alias.name) for alias in node.names})
    return _ModuleSource(classes, imports, registrations)


def _package_sources() -> dict[str, _ModuleSource]:
    """``{module name: its source read}`` of every module of the ``models`` package (the package path may be
    extended, ``models.__path__``, to add models from elsewhere; the first module of a name wins, as on import)."""
    from . import __path__ as package_path

    found = {}
    for module in pkgutil.iter_modules(package_path):
        path = Path(module.module_finder.path) / f"{module.name}.py"
        if not module.ispkg and module.name not in found and path.is_file():
            found[module.name] = _read_module(path.read_text())
    return found


def model_modules() -> dict[str, str]:
    """``{model name: module name}`` of every model of the ``models`` package, found by reading (not importing)
    its modules."""
    found = {}
    for module, source in _package_sources().items():
        for name, _ in source.registrations:
            found.setdefault(name, f"{__package__}.{module}")
    return found


def known_models() -> list[str]:
    """The names of every model (no model module is imported)."""
    return sorted(model_modules())


@dataclass(frozen=True)
class ModelTraits:
    """What the generator and postprocessing need to know of a model before (or without) importing it."""

    name: str
    #: module that defines the model
    module: str
    #: its forecasts depend on a random draw (several samples per forecast differ); the class attribute, which a
    #: model may refine per instance from its hyper-parameters (SAVP without latent variables, ``nz = 0``)
    stochastic: bool


def _class_stochastic(sources: dict[str, _ModuleSource], module: str, name: str) -> bool | None:
    """The ``stochastic`` value class ``name`` of ``module`` sets or inherits from its bases in the package."""
    source = sources.get(module)
    if source is None:
        return None
    if name not in source.classes:
        origin = source.imports.get(name)
        return _class_stochastic(sources, *origin) if origin else None
    bases, value = source.classes[name]
    if value is not None:
        if not isinstance(value, ast.Constant) or not isinstance(value.value, bool):
            raise ValueError(f"class {name}: 'stochastic' must be set to True or False, so that the model registry "
                             f"can read it without importing the model")
        return value.value
    inherited = (_class_stochastic(sources, module, base) for base in bases)
    return next((value for value in inherited if value is not None), None)


def model_traits(name: str) -> ModelTraits:
    """The traits of model ``name``, read from the package's source (no model module is imported)."""
    sources = _package_sources()
    for module, source in sources.items():
        for registered, class_name in source.registrations:
            if registered == name:
                stochastic = _class_stochastic(sources, module, class_name)
                if stochastic is None:
                    raise ValueError(f"model {name}: neither class {class_name} nor its bases in the models "
                                     f"package set 'stochastic'")
                return ModelTraits(name, f"{__package__}.{module}", stochastic)
    raise UserError(f"unknown model {name!r}; known models: {', '.join(known_models())}")


def hparams_template_path(name: str, dataset: str = "era5") -> Path:
    """``templates/hparams/<dataset>/<name>/model_hparams_template.json`` (it may not exist)."""
    return templates_dir() / "hparams" / dataset / name / "model_hparams_template.json"


def models_with_template(dataset: str) -> list[str]:
    """The models with a hyper-parameter template for ``dataset`` (those whose defaults need adapting to it)."""
    return [name for name in known_models() if hparams_template_path(name, dataset).is_file()]


def _entry(name: str) -> _Entry:
    return look_up(_REGISTRY, name, model_modules, "model")


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


def resolve_hparams(name: str, user: dict[str, Any] | None, source: str = "model hparams",
                    defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``name`` overridden by ``user``; an unknown key or a wrong type is a :class:`UserError`
    naming the key and the accepted keys. ``source`` names the file in messages. ``defaults`` replaces the
    model's own defaults (e.g. its JSON template, so that a configuration tool validates without importing the
    model's module and TensorFlow)."""
    hparams = dict(defaults) if defaults is not None else default_hparams(name)
    if user is None:
        return hparams
    if not isinstance(user, dict):
        raise UserError(f"{source}: expected a JSON object of hyper-parameters, got {type(user).__name__}")
    for key, value in user.items():
        if key not in hparams:
            raise UserError(f"{source}: unknown hyper-parameter {key!r} for model {name}; accepted keys: "
                            f"{', '.join(sorted(hparams))}")
        hparams[key] = _check_type(name, key, value, hparams[key], source, accepted=", ".join(sorted(hparams)))
    check_hparam_values(name, hparams, source)
    return hparams


def _numbers(key: str, value: Any):
    """``(name, number)`` of a numeric value or of each numeric element of a list value."""
    if isinstance(value, (list, tuple)):
        return [pair for index, item in enumerate(value) for pair in _numbers(f"{key}[{index}]", item)]
    return [(key, value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def check_hparam_values(model: str, hparams: dict[str, Any], source: str = "model hparams") -> None:
    """Range checks of hyper-parameter values (types are checked by :func:`resolve_hparams`); needs no
    TensorFlow, so a configuration tool can call it on a JSON it is about to write.

    Every number is finite; rates (``lr``) are > 0; counts (``batch_size``, ``max_epochs``, layer widths, ...)
    are >= 1; ``context_frames`` < ``sequence_length``; string keys with a fixed list (``loss_fun``) take a
    listed value. A violation is a :class:`UserError` naming ``source``, the key and the value.
    """
    def fail(key: str, value: Any, expected: str):
        raise UserError(f"{source}: hyper-parameter {key!r} of model {model} must be {expected}, got {value!r}")

    for key, value in hparams.items():
        for name, number in _numbers(key, value):
            if not math.isfinite(number):
                fail(name, number, "a finite number")
        if key in RATE_HPARAMS and _numbers(key, value) and not value > 0:
            fail(key, value, "greater than 0")
        if key in COUNT_HPARAMS and _numbers(key, value) and not value >= 1:
            fail(key, value, "an integer >= 1")
        if key in HPARAM_CHOICES and value not in HPARAM_CHOICES[key]:
            hint = _RENAMED_VALUES.get((key, value))
            fail(key, value, hint or f"one of {', '.join(HPARAM_CHOICES[key])}")
    context, length = hparams.get("context_frames"), hparams.get("sequence_length")
    if isinstance(context, int) and isinstance(length, int) and not context < length:
        fail("context_frames", context, f"smaller than sequence_length ({length}): the forecast needs frames after "
                                        f"the context")


def template_hparams(name: str, dataset: str = "era5") -> dict[str, Any]:
    """The hyper-parameter template of model ``name`` for ``dataset``: the JSON of
    ``templates/hparams/<dataset>/<name>/model_hparams_template.json`` if it exists, else the model's defaults."""
    path = hparams_template_path(name, dataset)
    if path.is_file():
        return read_json(path, what=f"hyper-parameter template of {name}")
    return default_hparams(name)


def sequence_frames(hparams: dict[str, Any]) -> tuple[int, int]:
    """``(context frames, forecast frames)`` of a model with ``hparams``: ``context_frames`` and
    ``sequence_length - context_frames`` (a ValueError unless the sequence is longer than its context)."""
    context, length = int(hparams["context_frames"]), int(hparams["sequence_length"])
    if length <= context:
        raise ValueError(f"sequence_length ({length}) must exceed context_frames ({context})")
    return context, length - context


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
