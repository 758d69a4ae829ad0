"""Registries found by reading source text: which classes of a package carry a registering decorator, without
importing the package's modules (so without their heavy dependencies, TensorFlow above all).

A class counts when it is decorated with ``@<decorator>("<name>", ...)``, the name a string literal; the module
that registers a name is imported when the name is first looked up (:func:`look_up`).

Example::

    from video_prediction_tools.utils.source_scan import registered_modules
    from video_prediction_tools import datasets
    registered_modules(datasets.__path__, "video_prediction_tools.datasets", "register_dataset")
    # {'era5': 'video_prediction_tools.datasets.era5', 'moving_mnist': 'video_prediction_tools.datasets.moving_mnist'}
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from .errors import UserError

T = TypeVar("T")


def decorated_names(source: str, decorator: str) -> list[str]:
    """The names given to ``@<decorator>("<name>", ...)`` decorators of the classes of a module's source text."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for call in node.decorator_list:
                if (isinstance(call, ast.Call) and getattr(call.func, "id", None) == decorator
                        and call.args and isinstance(call.args[0], ast.Constant)):
                    names.append(str(call.args[0].value))
    return names


def registered_modules(package_path: Iterable[str], package: str, decorator: str) -> dict[str, str]:
    """``{registered name: module name}`` over the modules of a package (every directory of its ``__path__``),
    read as text; the first module registering a name wins."""
    found: dict[str, str] = {}
    for module in pkgutil.iter_modules(package_path):
        if module.ispkg:
            continue
        path = Path(module.module_finder.path) / f"{module.name}.py"
        if path.is_file() and decorator in (text := path.read_text()):
            for name in decorated_names(text, decorator):
                found.setdefault(name, f"{package}.{module.name}")
    return found


def look_up(registry: dict[str, T], name: str, modules: Callable[[], dict[str, str]], kind: str) -> T:
    """``registry[name]``, first importing the module that registers ``name`` (``modules()``: the source scan's
    ``{name: module}``) if it is not imported yet; UserError naming the known names for an unknown one."""
    if name not in registry:
        found = modules()
        if name not in found:
            raise UserError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(found))}")
        importlib.import_module(found[name])
    return registry[name]
