"""A base path as TensorFlow Serving lays it out::

    BASE_PATH/1/model.npz
    BASE_PATH/2/model.npz
    BASE_PATH/tmp-upload/      <- ignored: not an integer

what versions a folder on disk holds, and, when a base path holds none, the one line that
says what was expected and what was found instead; the lines are the same for a base path on
object storage (``minidl.serving.storage``), which lists its entries its own way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import ModuleType

MODEL_FILE = "model.npz"
LAYOUT = f"BASE/<integer version>/{MODEL_FILE}"
# the line reporting a base path without versions lists this many of its entries at most
MAX_ENTRIES_SHOWN = 5


def is_version_name(name: str) -> bool:
    # only plain non-negative integers: "1", "002"; never "-1", "1.5", "v1", "١"
    return name.isascii() and name.isdigit() and len(name) <= 18


def version_folders(names: Iterable[str]) -> dict[int, str]:
    """Each version among the folder ``names`` and the folder it is read from ("002" is
    version 2, read from BASE/002). Of two folders naming one version ("2" and "002"), the
    one written as the number itself counts, else the first in sorted order."""
    folders: dict[int, str] = {}
    for name in sorted(names):
        if is_version_name(name) and (int(name) not in folders or name == str(int(name))):
            folders[int(name)] = name
    return folders


def scan_versions(base_path: str) -> dict[int, tuple[str, tuple[int, int] | None]]:
    """``{version: (its folder's name, (size, mtime_ns) of its model.npz, or None while the
    file is missing)}``."""
    try:
        names = [name for name in os.listdir(base_path)
                 if os.path.isdir(os.path.join(base_path, name))]
    except FileNotFoundError:
        return {}
    found: dict[int, tuple[str, tuple[int, int] | None]] = {}
    for version, name in version_folders(names).items():
        try:
            stat = os.stat(os.path.join(base_path, name, MODEL_FILE))
        except (FileNotFoundError, NotADirectoryError):
            found[version] = (name, None)
            continue
        found[version] = (name, (stat.st_size, stat.st_mtime_ns))
    return found


def base_path_problem(base_path: str) -> str | None:
    """Why ``base_path`` cannot hold versions at all (it is missing, or not a folder), or None."""
    if os.path.isdir(base_path):
        return None
    if not os.path.exists(base_path):
        return missing_problem(base_path)
    return file_problem(base_path)


def missing_problem(base_path: str) -> str:
    return f"base path {base_path} does not exist; expected {LAYOUT}"


def file_problem(base_path: str, paths: ModuleType = os.path) -> str:
    """The line for a base path that is a file; ``paths`` splits it (``posixpath`` for a URL)."""
    problem = f"base path {base_path} is a file, not a folder; expected {LAYOUT}"
    parent, version = paths.split(paths.dirname(base_path))
    if paths.basename(base_path) == MODEL_FILE and is_version_name(version):
        # the usual slip: one version's model file instead of the folder holding the versions
        return f"{problem}; give the folder holding the version folders: {parent}"
    return problem


ListFolder = Callable[[str], list[tuple[str, bool]]]


def _entries(list_folder: ListFolder, limit: int) -> list[str]:
    """Up to ``limit`` entries of a base path, sorted, one folder deep: "a.npz", "v1/b", "c/"."""
    entries: list[str] = []
    for name, is_folder in sorted(list_folder("")):
        if not is_folder:
            entries.append(name)
            continue
        try:
            inside = sorted(list_folder(name))[:limit]
        except OSError:  # unreadable, or removed since: its name alone still tells something
            inside = []
        shown = [f"{name}/{child}" + ("/" if child_is_folder else "")
                 for child, child_is_folder in inside]
        entries.extend(shown or [f"{name}/"])
        if len(entries) >= limit:
            break
    return entries[:limit]


def no_version_problem(base_path: str, list_folder: ListFolder | None = None,
                       paths: ModuleType = os.path) -> str:
    """The line saying that no version folder of ``base_path`` holds ``model.npz``: the layout
    expected, an example, and the first :data:`MAX_ENTRIES_SHOWN` entries found instead.

    ``list_folder(relative)`` lists the folder ``relative`` to the base path ("" for the base
    path itself) as ``(name, is_folder)`` pairs; by default, on disk. ``paths`` joins the
    example path (``posixpath`` for a URL).
    """
    if list_folder is None:
        def list_folder(relative: str) -> list[tuple[str, bool]]:
            folder = os.path.join(base_path, relative)
            return [(name, os.path.isdir(os.path.join(folder, name)))
                    for name in os.listdir(folder)]

    entries = _entries(list_folder, MAX_ENTRIES_SHOWN + 1)
    found = ", ".join(entries[:MAX_ENTRIES_SHOWN]) or "an empty folder"
    if len(entries) > MAX_ENTRIES_SHOWN:
        found += ", ..."
    example = paths.join(base_path, "1", MODEL_FILE)
    return f"no version to serve in {base_path}: expected {LAYOUT} (e.g. {example}); found: {found}"
