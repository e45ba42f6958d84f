"""The minidl file format: one ``.npz`` holding a JSON document and named arrays.

A file is a zip archive (members stored, not compressed) of ``.npy`` arrays, so that
``numpy.load(path, allow_pickle=False)`` opens it. Besides the caller's arrays it holds one
member ``__minidl__.npy``: a uint8 array of UTF-8 JSON, the caller's ``meta`` plus

    format          "minidl.npz"
    format_version  2 (1: files of minidl 0.1.0, which read the same way)
    minidl_version  the writer's minidl.__version__
    arrays          {key: {"sha256": 64 hex digits, "shape": [...], "dtype": "<f4"}}

This module knows nothing of layers or models: ``model.save`` / ``load_model`` build on it.
Loading never unpickles and never imports a name found in the file; it checks the zip
(CRC-32 of every member), the JSON, the array table, every ``.npy`` header, shape, dtype and
SHA-256 before returning anything. docs/format.md specifies the format for other readers.
``minidl.io.remote`` copies files to and from fsspec URLs (``s3://...``; docs/storage.md).
"""

from minidl.io.loading import load_npz, read_metadata, verify
from minidl.io.saving import replace_atomically, save_npz
from minidl.io.spec import FORMAT, FORMAT_VERSION, METADATA_KEY, ModelFormatError

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_KEY", "ModelFormatError", "load_npz",
           "read_metadata", "replace_atomically", "save_npz", "verify"]
