"""Optional dependencies: imported where they are used, with an error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``; if it is missing, a ``ModuleNotFoundError`` that says which of
    minidl's extras brings it: ``pip install 'minidl[EXTRA]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{error.name} is not installed; this part of minidl needs the {extra!r} extra: "
            f"pip install 'minidl[{extra}]'", name=error.name) from error
