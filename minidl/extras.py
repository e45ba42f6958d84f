"""Optional dependencies: imported where they are used, with an error naming the extra."""

from __future__ import annotations


def missing(error: ModuleNotFoundError, extra: str) -> ModuleNotFoundError:
    """The error to raise instead of ``error`` (from an ``import`` of an optional package):
    it says which of minidl's extras brings the package, ``pip install 'minidl[EXTRA]'``."""
    return ModuleNotFoundError(
        f"{error.name} is not installed; this part of minidl needs the {extra!r} extra: "
        f"pip install 'minidl[{extra}]'", name=error.name)
