"""A base path on disk, as TensorFlow Serving lays it out::

    BASE_PATH/1/model.npz
    BASE_PATH/2/model.npz
    BASE_PATH/tmp-upload/      <- ignored: not an integer

what versions it holds, and, when it holds none, the one line that says what was expected
and what was found instead.
"""

from __future__ import annotations

import os

MODEL_FILE = "model.npz"
LAYOUT = f"BASE/<integer version>/{MODEL_FILE}"
# the line reporting a base path without versions lists this many of its entries at most
MAX_ENTRIES_SHOWN = 5


def _is_version_name(name: str) -> bool:
    # only plain non-negative integers: "1", "002"; never "-1", "1.5", "v1", "١"
    return name.isascii() and name.isdigit() and len(name) <= 18


def scan_versions(base_path: str) -> dict[int, tuple[int, int] | None]:
    """``{version: (size, mtime_ns) of model.npz, or None while the file is missing}``."""
    try:
        names = os.listdir(base_path)
    except FileNotFoundError:
        return {}
    found: dict[int, tuple[int, int] | None] = {}
    for name in names:
        if not _is_version_name(name):
            continue
        try:
            stat = os.stat(os.path.join(base_path, name, MODEL_FILE))
        except (FileNotFoundError, NotADirectoryError):
            if os.path.isdir(os.path.join(base_path, name)):
                found[int(name)] = None
            continue
        found[int(name)] = (stat.st_size, stat.st_mtime_ns)
    return found


def base_path_problem(base_path: str) -> str | None:
    """Why ``base_path`` cannot hold versions at all (it is missing, or not a folder), or None."""
    if os.path.isdir(base_path):
        return None
    if not os.path.exists(base_path):
        return f"base path {base_path} does not exist; expected {LAYOUT}"
    problem = f"base path {base_path} is a file, not a folder; expected {LAYOUT}"
    parent, version = os.path.split(os.path.dirname(base_path))
    if os.path.basename(base_path) == MODEL_FILE and _is_version_name(version):
        # the usual slip: one version's model file instead of the folder holding the versions
        return f"{problem}; give the folder holding the version folders: {parent}"
    return problem


def _entries(base_path: str, limit: int) -> list[str]:
    """Up to ``limit`` entries of ``base_path``, sorted, one folder deep: "a.npz", "v1/b", "c/"."""
    entries: list[str] = []
    for name in sorted(os.listdir(base_path)):
        path = os.path.join(base_path, name)
        if not os.path.isdir(path):
            entries.append(name)
            continue
        try:
            inside = sorted(os.listdir(path))[:limit]
        except OSError:  # unreadable, or removed since: its name alone still tells something
            inside = []
        shown = [f"{name}/{child}" + ("/" if os.path.isdir(os.path.join(path, child)) else "")
                 for child in inside]
        entries.extend(shown or [f"{name}/"])
        if len(entries) >= limit:
            break
    return entries[:limit]


def no_version_problem(base_path: str) -> str:
    """The line saying that no version folder of ``base_path`` holds ``model.npz``: the layout
    expected, an example, and the first :data:`MAX_ENTRIES_SHOWN` entries found instead."""
    entries = _entries(base_path, MAX_ENTRIES_SHOWN + 1)
    found = ", ".join(entries[:MAX_ENTRIES_SHOWN]) or "an empty folder"
    if len(entries) > MAX_ENTRIES_SHOWN:
        found += ", ..."
    example = os.path.join(base_path, "1", MODEL_FILE)
    return f"no version to serve in {base_path}: expected {LAYOUT} (e.g. {example}); found: {found}"
