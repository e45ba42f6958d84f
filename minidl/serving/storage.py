"""Where a model's versions live: a folder on disk, or a prefix on object storage.

Both stores answer the version manager's questions the same way:

.. code-block:: text

    scan()                    {version: signature, or None while model.npz is missing},
                              and the problem to report (no base path, no version), or None
    startup_problem()         a problem to refuse to start for (a base path that is a file)
    source(version)           BASE/<version>/model.npz: what the logs and errors name
    fetch(version, signature) a local file to load that version from
    discard(version)          drop the local copy of a version unloaded or failed

A signature tells whether a version's ``model.npz`` changed: ``(size, mtime_ns)`` on disk,
``(size, ETag)`` on object storage (or the modification time, where a listing has no ETag).

:class:`LocalStore` loads a version where it is. :class:`RemoteStore` (``s3://bucket/models/m``
or any fsspec URL, see ``minidl.io.remote``) lists ``BASE/`` and each ``BASE/<version>/``
afresh at every scan, and copies a version into a local cache before it is loaded::

    CACHE_DIR/<hash of BASE>/<version>/<hash of signature>/model.npz

The copy is written atomically and the loader still checks all of it (every SHA-256), so a
restart loads unchanged versions from the cache, and a damaged copy is refused as a damaged
upload is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
from pathlib import Path
from typing import Any

from minidl.io import remote
from minidl.serving import layout

Signature = tuple[int, int | str]
# what in a listing changes with an object: its ETag (S3, GCS, Azure), else a modification
# time, as s3fs, adlfs, gcsfs, the local and HDFS filesystems, the memory one spell it
_CHANGE_KEYS = ("ETag", "etag", "LastModified", "last_modified", "updated", "mtime", "created")


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/minidl/serving``, or ``~/.cache/minidl/serving``."""
    root = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(root):  # the XDG specification: a relative value is to be ignored
        root = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "minidl", "serving")


def open_store(base_path: str,
               cache_dir: str | os.PathLike[str] | None = None) -> LocalStore | RemoteStore:
    """The store for ``base_path``: a RemoteStore for a URL (cached in ``cache_dir``, by
    default :func:`default_cache_dir`), a LocalStore otherwise."""
    if remote.is_remote(base_path):
        return RemoteStore(base_path, cache_dir if cache_dir is not None else default_cache_dir())
    return LocalStore(base_path)


class LocalStore:
    """A base path on disk: versions are scanned with ``os.listdir`` and loaded in place."""

    def __init__(self, base_path: str) -> None:
        self.base_path = base_path
        self._folders: dict[int, str] = {}  # version -> its folder's name, at the last scan

    def scan(self) -> tuple[dict[int, Signature | None], str | None]:
        problem = layout.base_path_problem(self.base_path)
        found = {} if problem else layout.scan_versions(self.base_path)
        self._folders = {version: name for version, (name, _) in found.items()}
        versions = {version: signature for version, (_, signature) in found.items()}
        if problem is None and all(signature is None for signature in versions.values()):
            problem = layout.no_version_problem(self.base_path)
        return versions, problem

    def startup_problem(self) -> str | None:
        if not os.path.lexists(self.base_path):
            return None  # waited for; but a file does not become a folder by waiting
        return layout.base_path_problem(self.base_path)

    def source(self, version: int) -> str:
        folder = self._folders.get(version, str(version))
        return os.path.join(self.base_path, folder, layout.MODEL_FILE)

    def fetch(self, version: int, signature: Signature) -> str:
        return self.source(version)

    def discard(self, version: int) -> None:
        """Nothing to drop: the version was read where it is."""


class RemoteStore:
    """A base path behind an fsspec URL, its versions copied to ``cache_dir`` to be loaded.

    Creating one touches no network; it raises ModuleNotFoundError at once when the package
    for the URL's protocol is missing.
    """

    def __init__(self, base_path: str, cache_dir: str | os.PathLike[str]) -> None:
        remote.filesystem(base_path)  # a missing s3fs is said now, not at the first poll
        self.base_path = base_path
        self._folders: dict[int, str] = {}  # version -> its folder's name, at the last scan
        self.cache = Path(cache_dir) / hashlib.sha256(base_path.encode()).hexdigest()[:16]

    def scan(self) -> tuple[dict[int, Signature | None], str | None]:
        """One listing of ``BASE/``, one of each ``BASE/<version>/``. Any failure of the
        storage (no credentials, no connection) raises OSError."""
        # fsspec gives one filesystem per process (a forked worker gets its own) and
        # caches its listings: clear them, or a poll would not see uploads and deletions
        fs, path = remote.filesystem(self.base_path)
        with remote.storage_errors(self.base_path):
            fs.invalidate_cache()
            try:
                entries = fs.ls(path, detail=True)
            except FileNotFoundError:  # no such bucket, or nothing under the prefix
                return {}, layout.missing_problem(self.base_path)
            listed = [(entry["name"].rstrip("/"), entry["type"]) for entry in entries]
            if listed == [(path.rstrip("/"), "file")]:  # the listing of a file is the file
                return {}, layout.file_problem(self.base_path, posixpath)
            versions: dict[int, Signature | None] = {}
            folders = layout.version_folders(_name(entry) for entry in entries
                                             if entry["type"] == "directory")
            self._folders = {}
            for version, folder in folders.items():
                try:
                    inside = fs.ls(posixpath.join(path, folder), detail=True)
                except FileNotFoundError:  # removed since the first listing
                    continue
                model = [item for item in inside
                         if _name(item) == layout.MODEL_FILE and item["type"] == "file"]
                versions[version] = _signature(model[0]) if model else None
                self._folders[version] = folder
            if any(signature is not None for signature in versions.values()):
                return versions, None

            def list_folder(relative: str) -> list[tuple[str, bool]]:
                # mostly answered from the listings just made
                listed = fs.ls(posixpath.join(path, relative) if relative else path, detail=True)
                return [(_name(item), item["type"] == "directory") for item in listed]

            return versions, layout.no_version_problem(self.base_path, list_folder, posixpath)

    def startup_problem(self) -> None:
        """None: looking needs the network, which may be slow or down at start-up; the
        poller reports what it finds."""

    def source(self, version: int) -> str:
        folder = self._folders.get(version, str(version))
        return posixpath.join(self.base_path, folder, layout.MODEL_FILE)

    def fetch(self, version: int, signature: Signature) -> str:
        """The cached copy of the version, downloaded first if there is none for this
        signature. Raises OSError when the copy fails."""
        digest = hashlib.sha256(repr(signature).encode()).hexdigest()[:16]
        cached = self.cache / str(version) / digest / layout.MODEL_FILE
        if not cached.is_file():
            # the objects came from storage that asked for credentials: not for other users
            self.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
            cached.parent.mkdir(parents=True, exist_ok=True)
            remote.download(self.source(version), cached)
        return str(cached)

    def discard(self, version: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.cache / str(version))


def _name(entry: dict[str, Any]) -> str:
    return posixpath.basename(entry["name"].rstrip("/"))


def _signature(entry: dict[str, Any]) -> Signature:
    changed = next((entry[key] for key in _CHANGE_KEYS if entry.get(key) is not None), "")
    return int(entry["size"]), str(changed)
