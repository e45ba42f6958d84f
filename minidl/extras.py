"""Optional dependencies: imported where they are used, with an error naming the extra."""

from __future__ import annotations


def missing(error: ModuleNotFoundError, extra: str) -> ModuleNotFoundError:
    """The error to raise instead of ``error`` (from an ``import`` of an optional package):
    it says which of minidl's extras brings the package, ``pip install 'minidl[EXTRA]'``.
    The package is named, not the submodule asked for (``sklearn``, not ``sklearn.base``)."""
    package = (error.name or "").partition(".")[0]
    return ModuleNotFoundError(
        f"{package} is not installed; this part of minidl needs the {extra!r} extra: "
        f"pip install 'minidl[{extra}]'", name=package)
