"""Files behind a URL: ``s3://bucket/models/m/1/model.npz`` and any other fsspec URL.

fsspec maps a URL's protocol to the package that implements it (s3fs for ``s3://``, gcsfs for
``gs://``, adlfs for ``az://``, pyarrow for ``hdfs://``); the ``s3`` extra brings fsspec and
s3fs. Where the endpoint and the credentials come from is that package's business: for S3,
botocore's usual places (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
``~/.aws/config``...). minidl adds no setting of its own.

A URL is only ever copied whole, to or from a local file: the reader of minidl's format
checks a local regular file (``minidl.io.load_npz``) and the writer writes one atomically.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from minidl.extras import missing
from minidl.io.saving import replace_atomically
from minidl.io.spec import _READ_CHUNK_BYTES

# a protocol of two letters or more: "C://data" is a Windows drive, not a URL
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
_FILE_URL = "file://"


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for a URL whose protocol is not ``file``: ``s3://b/m``, ``gs://b/m``,
    ``memory://m``. A plain path, a Windows path (``C:\\models``) and a ``file://`` URL
    (see :func:`local_path`) are local."""
    text = os.fspath(path)
    return _URL.match(text) is not None and not text.lower().startswith(_FILE_URL)


def local_path(path: str | os.PathLike[str]) -> str:
    """The local path a ``file://`` URL names (``file:///srv/models`` is ``/srv/models``,
    percent-escapes decoded); any other path as it is."""
    text = os.fspath(path)
    if not text.lower().startswith(_FILE_URL):
        return text
    return urllib.request.url2pathname(text[len(_FILE_URL):])


def filesystem(url: str) -> tuple[Any, str]:
    """``(fs, path)`` for ``url``: fsspec's filesystem for its protocol (one instance per
    process and set of options, cached by fsspec) and the path inside it, without the
    protocol (``bucket/models/m``). Touches no network.

    Raises ModuleNotFoundError naming what to install when fsspec or the protocol's package
    is missing, and ValueError for a protocol fsspec does not know.
    """
    try:
        import fsspec
    except ModuleNotFoundError as error:
        raise missing(error, "s3") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:
        # fsspec knows the protocol but not its package: "Please install gcsfs to access
        # Google Storage", caused by the ModuleNotFoundError that names the module
        module = getattr(error.__cause__, "name", None) or error.name
        if module == "s3fs":
            raise missing(error.__cause__, "s3") from None
        raise ModuleNotFoundError(f"{module} is not installed; {url} needs it: pip install "
                                  f"{module} ({error})", name=module) from None
    except ValueError as error:  # "Protocol not known: foo"
        raise ValueError(f"{url}: {error}") from None


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn any failure of a filesystem's package inside the block into an OSError naming
    ``url``; FileNotFoundError and PermissionError keep their class. botocore's
    NoCredentialsError or EndpointConnectionError are no OSError: without this a caller
    would have to know every package's own errors."""
    try:
        yield
    except Exception as error:
        kind = type(error) if type(error) in (FileNotFoundError, PermissionError) else OSError
        detail = str(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
        if kind is FileNotFoundError and url.endswith(detail):  # s3fs' message: the bare path
            detail = "no such file"
        raise kind(f"{url}: {detail or type(error).__name__}") from error


def download(url: str, destination: str | os.PathLike[str]) -> None:
    """Copy the file at ``url`` to the local file ``destination``, atomically (a temporary
    file beside it, fsynced, then ``os.replace``): ``destination`` is the old file or the
    whole new one, never a part. Its folder must exist. Raises OSError naming ``url``."""
    fs, path = filesystem(url)
    with storage_errors(url), fs.open(path, "rb") as source:
        replace_atomically(Path(destination),
                           lambda file: shutil.copyfileobj(source, file, _READ_CHUNK_BYTES))


def upload(source: str | os.PathLike[str], url: str) -> None:
    """Copy the local file ``source`` to ``url``. Raises OSError naming ``url``.

    On S3 (and GCS, Azure) this replaces the object atomically: one PUT, or for a large file
    s3fs' multipart upload, which the store assembles only at its final request, makes the
    object appear whole or not at all, and a failed upload leaves the old object untouched.
    A filesystem with real files behind fsspec (HDFS, SFTP) writes in place instead.
    """
    fs, path = filesystem(url)
    with storage_errors(url):
        fs.put_file(os.fspath(source), path)
