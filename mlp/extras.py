"""Optional dependencies, imported when first needed: ``import mlp`` needs NumPy alone."""

from __future__ import annotations

import importlib
from types import ModuleType

from backends.errors import install_hint

from .errors import MissingExtra


def require(module: str, extra: str, needed_for: str, package: str | None = None) -> ModuleType:
    """``module`` imported, or a ``MissingExtra`` that says which extra (or ``package``,
    the name pip knows it by) to install for ``needed_for``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{needed_for} needs {module}: {install_hint(extra)} "
            f"(or pip install {package or module})"
        ) from None
