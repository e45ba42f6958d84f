"""An S3 server for the tests: moto's standalone server, a real HTTP server on 127.0.0.1 (no
mock of any client), started once per test session, and the standard AWS environment pointed
at it, per test, with monkeypatch. Nothing else tells s3fs or boto3 where it is.

The fixtures (``s3_endpoint``, ``s3_env``, ``s3_bucket``) are registered in conftest.py.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# what could point boto at another account, region or server than the test's
_OTHER_AWS_SETTINGS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                       "AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3",
                       "AWS_CA_BUNDLE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE")


@contextlib.contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port, until the end of the block; yields
    its endpoint URL."""
    from test_serving_support import free_port, wait_until  # conftest needs no serving extra

    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: process.poll() is not None or _accepts(port), timeout=30)
        assert process.poll() is None, f"moto's server ended:\n{log_path.read_text()}"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def point_aws_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> None:
    """The standard environment, and only it, naming ``endpoint`` and test credentials;
    ``~/.aws`` replaced by an empty ``home``."""
    for name in _OTHER_AWS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minidl-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minidl-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    # fsspec keeps one S3FileSystem per process, whose client read the environment when
    # it was made: each test gets a new one
    forget_s3_clients()


def forget_s3_clients() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


class Bucket:
    """A new bucket on the test server, read and written with boto3: an independent client,
    so that what minidl wrote through s3fs is checked by another S3 implementation."""

    def __init__(self) -> None:
        import boto3

        self.name = f"minidl-{uuid.uuid4().hex[:16]}"
        self.client = boto3.client("s3")
        self.client.create_bucket(Bucket=self.name)

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return sorted(entry["Key"] for entry in listing.get("Contents", []))


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of moto's S3 server, started at the first test that asks for it."""
    folder = tmp_path_factory.mktemp("moto")
    with moto_server(folder / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The AWS environment pointed at the test server (yields its endpoint)."""
    home = tmp_path / "aws-home"
    home.mkdir()
    point_aws_at(monkeypatch, s3_endpoint, home)
    yield s3_endpoint
    forget_s3_clients()


@pytest.fixture
def s3_bucket(s3_env: str) -> Bucket:
    """A new, empty bucket on the test server, the environment pointed at it."""
    return Bucket()
