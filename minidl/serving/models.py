"""The version manager: finds model versions, loads them, swaps them in, unloads them.

Layout on disk or on object storage (``s3://bucket/models/m``: ``minidl.serving.storage``), as
TensorFlow Serving's::

    BASE_PATH/1/model.npz
    BASE_PATH/2/model.npz      <- the highest version is served (default policy)
    BASE_PATH/tmp-upload/      <- ignored: not an integer

Every ``file_system_poll_wait_seconds`` a background thread scans each base path. A version the
policy wants and that is not loaded yet is loaded *beside* the served ones; only when it is
ready is it published, by replacing one immutable snapshot with one reference assignment, so a
request that already holds the old snapshot finishes on the old model. Versions the policy no
longer wants (a newer one is ready, or their folder was removed) are then unloaded.

A version that fails to load is kept in the status with its error and never replaces a good
one; it is retried only when its ``model.npz`` changes (its signature: size and modification
time, or ETag), so a file that was still being copied is picked up once complete. Unlike TF
Serving, the default ``latest`` policy then falls back to the highest version that *did* load
instead of serving nothing. A version on object storage is first copied to a local cache; a
copy that fails (the network) is retried at the next poll.

A problem that leaves a model with nothing to serve (a base path that is missing or is a file,
no version folder holding ``model.npz``, a scan that failed) is logged in one line when it
first appears, saying what layout is expected and what was found, and not again at every poll;
the poller keeps scanning, so fixing the folder is enough.

States are TF Serving's names. Three of them are ever seen here: LOADING, AVAILABLE and END
(unloaded, or failed with a non-OK error code). START and UNLOADING take no time: a version
is loaded as soon as it is found, and unloading is dropping one reference.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from minidl.serving.config import ConfigError, ModelConfig
from minidl.serving.storage import LocalStore, RemoteStore, Signature, open_store

logger = logging.getLogger("minidl.serving")

LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"
# ended versions whose folder is gone are remembered for the status, up to this many per model
MAX_ENDED_RECORDS = 32


class ServableNotFound(LookupError):
    """No such model, version or label: answered with HTTP 404."""


class ServableUnavailable(RuntimeError):
    """The model is configured but has no version ready yet: answered with HTTP 503."""


def default_loader(path: str) -> Any:
    """Load a model file with :func:`minidl.model.load_model` (imported late: it sits above)."""
    from minidl.model import load_model

    return load_model(path)


def _error_code(error: BaseException) -> str:
    # a malformed file or a model config the loader rejects is the caller's argument
    return "INVALID_ARGUMENT" if isinstance(error, ValueError) else "UNKNOWN"


@dataclass
class VersionRecord:
    """What the status endpoint reports for one version."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""
    file_signature: Signature | None = None

    def as_status(self) -> dict[str, Any]:
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


@dataclass(frozen=True)
class Served:
    """An immutable snapshot of one model's loaded versions, replaced as a whole on change."""

    models: MappingProxyType  # version -> model object
    latest: int | None


_EMPTY = Served(MappingProxyType({}), None)


class _ModelSlot:
    """Per model: its config and store, the records of its versions and the served snapshot."""

    def __init__(self, config: ModelConfig, store: LocalStore | RemoteStore) -> None:
        self.config = config
        self.store = store
        self.records: dict[int, VersionRecord] = {}
        self.served: Served = _EMPTY
        self.problem: str | None = None  # the last one logged: logged again only if it changes


class ModelManager:
    """Loads and serves the versions of one or more models, polling their base paths.

    ``loader(path) -> model`` loads one ``model.npz`` (default: ``minidl.model.load_model``).
    ``file_system_poll_wait_seconds``: seconds between scans; 0 scans once, at :meth:`start`.
    ``cache_dir``: where versions on object storage are copied to be loaded (default
    ``$XDG_CACHE_HOME/minidl/serving``, else ``~/.cache/minidl/serving``).
    The polling thread is a daemon, started by :meth:`start` (again after a ``fork``: threads
    do not survive it) and stopped by :meth:`close`.
    """

    def __init__(self, configs: Sequence[ModelConfig], *,
                 file_system_poll_wait_seconds: float = 1.0,
                 loader: Callable[[str], Any] = default_loader,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        if not configs:
            raise ValueError("ModelManager: no model configured")
        if not file_system_poll_wait_seconds >= 0:
            raise ValueError("file_system_poll_wait_seconds must be >= 0 (0 scans once), "
                             f"got {file_system_poll_wait_seconds}")
        self._slots = {config.name: _ModelSlot(config, open_store(config.base_path, cache_dir))
                       for config in configs}
        if len(self._slots) != len(configs):
            raise ValueError("ModelManager: a model name is configured twice")
        self.model_names = frozenset(self._slots)
        self.poll_wait_seconds = float(file_system_poll_wait_seconds)
        self.loader = loader
        self._lock = threading.Lock()        # guards records; held only for short updates
        self._poll_lock = threading.Lock()   # one scan at a time
        self._start_lock = threading.Lock()
        self._started_pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def check_base_paths(self) -> None:
        """Raise ConfigError when a base path exists but is not a folder (such as one
        version's ``model.npz``): ``minidl serve`` calls it before serving. A missing base
        path is no error: the poller says so once and waits for it, as TF Serving does, for
        servers started before their models are copied in. A URL is not looked at here (no
        request that could hang the start): the poller reports what it finds."""
        problems = [f"model {name!r}: {problem}" for name, slot in self._slots.items()
                    if (problem := slot.store.startup_problem()) is not None]
        if problems:
            raise ConfigError("; ".join(problems))

    def start(self) -> None:
        """Scan once now (so the first answer can already be served), then poll in the
        background. Idempotent; in a forked child (a pre-forking engine's worker) it starts
        afresh."""
        pid = os.getpid()
        if self._started_pid == pid:
            return
        if self._started_pid is not None:
            # forked after starting: the parent's poller did not follow, and a lock it held
            # at the fork would stay held forever here, so begin with fresh ones
            self._lock = threading.Lock()
            self._poll_lock = threading.Lock()
            self._start_lock = threading.Lock()
            self._thread = None
        with self._start_lock:
            if self._started_pid == pid or self._stop.is_set():
                return
            self.poll()
            if self.poll_wait_seconds > 0:
                self._thread = threading.Thread(
                    target=self._poll_forever, name="minidl-serving-poller", daemon=True)
                self._thread.start()
            self._started_pid = pid

    def close(self, timeout: float = 5.0) -> None:
        """Stop polling and drop every model (requests in flight keep theirs)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            for slot in self._slots.values():
                slot.served = _EMPTY
                for record in slot.records.values():
                    if record.state == AVAILABLE:
                        record.state = END

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            self.poll()

    # ------------------------------------------------------------------ polling

    def poll(self) -> None:
        """Scan every base path once and load/unload what changed. Never raises.

        A model's problem is logged when it differs from the one its previous scan logged:
        once, not at every poll.
        """
        with self._poll_lock:
            for slot in self._slots.values():
                if self._stop.is_set():
                    return
                name = slot.config.name
                try:
                    problem = self._poll_model(slot)
                except Exception as error:  # a scan must never kill the poller: retry next time
                    problem = f"polling failed: {type(error).__name__}: {error}"
                    if problem != slot.problem:  # unforeseen: its traceback helps to fix it
                        logger.exception("minidl.serving: model %r: %s", name, problem)
                else:
                    if problem is not None and problem != slot.problem:
                        logger.warning("minidl.serving: model %r: %s", name, problem)
                slot.problem = problem

    def _poll_model(self, slot: _ModelSlot) -> str | None:
        """Load and unload what changed in the base path; returns the problem to report."""
        config = slot.config
        try:
            on_disk, problem = slot.store.scan()
        except OSError as error:  # no permission, no network: keep serving what is loaded
            return f"cannot scan base path {config.base_path}: {error}"
        with self._lock:
            for version, signature in on_disk.items():
                record = slot.records.get(version)
                if (record is not None and record.error_code != "OK" and signature is not None
                        and record.file_signature != signature):
                    del slot.records[version]  # the failed file changed: try it again
        while not self._stop.is_set():
            with self._lock:
                failed = {v for v, r in slot.records.items() if r.error_code != "OK"}
            candidates = [v for v, sig in on_disk.items() if sig is not None and v not in failed]
            wanted = config.version_policy.choose(candidates)
            to_load = [v for v in wanted if v not in slot.served.models]
            loaded_all = all([self._load(slot, v, on_disk[v]) for v in to_load])
            # a failure drops that version from the candidates: choose again (falls back to
            # the next version down); each round fails at least one more version, so it ends
            if loaded_all:
                self._unload_unwanted(slot, set(wanted), on_disk)
                break
        return problem

    def _load(self, slot: _ModelSlot, version: int, signature: Signature) -> bool:
        name, store = slot.config.name, slot.store
        source = store.source(version)
        with self._lock:
            slot.records[version] = VersionRecord(version, LOADING, file_signature=signature)
        logger.info("minidl.serving: loading model %r version %d from %s", name, version, source)
        try:
            path = store.fetch(version, signature)
        except OSError as error:
            # the copy failed, not the version (the network, an object deleted since the
            # listing): recorded without a signature, so the next poll tries again
            return self._failed(slot, version, error, str(error), None)
        try:
            model = self.loader(path)
            if getattr(model, "input_shape", None) is None:
                # requests are validated against it: a model without one cannot be served
                raise ValueError(f"{path}: the model has no input shape (saved before it was "
                                 "built); build it with input_dim and save it again")
        except Exception as error:  # any loader failure is reported in the status, not raised
            store.discard(version)
            # a cached copy's errors name the source, not the cache
            message = (str(error) or type(error).__name__).replace(path, source)
            return self._failed(slot, version, error, message, signature)
        with self._lock:
            models = dict(slot.served.models)
            models[version] = model
            # the one assignment that makes the new version visible to requests
            slot.served = Served(MappingProxyType(models), max(models))
            slot.records[version] = VersionRecord(version, AVAILABLE, file_signature=signature)
        logger.info("minidl.serving: model %r version %d is AVAILABLE", name, version)
        return True

    def _failed(self, slot: _ModelSlot, version: int, error: Exception, message: str,
                signature: Signature | None) -> bool:
        logger.error("minidl.serving: model %r version %d failed to load: %s",
                     slot.config.name, version, message)
        with self._lock:
            slot.records[version] = VersionRecord(
                version, END, _error_code(error), message, signature)
        return False

    def _unload_unwanted(self, slot: _ModelSlot, wanted: set[int],
                         on_disk: dict[int, Signature | None]) -> None:
        with self._lock:
            # called once every wanted version is loaded: the rest can go
            unwanted = set(slot.served.models) - wanted
            if unwanted:
                models = {v: m for v, m in slot.served.models.items() if v not in unwanted}
                slot.served = Served(MappingProxyType(models), max(models) if models else None)
                for version in unwanted:
                    slot.records[version].state = END
                    logger.info("minidl.serving: model %r version %d unloaded",
                                slot.config.name, version)
            # forget failed records whose folder is gone, and bound the ended history
            for version in [v for v, r in slot.records.items()
                            if v not in on_disk and r.error_code != "OK"]:
                del slot.records[version]
            ended = sorted(v for v, r in slot.records.items()
                           if r.state == END and v not in on_disk)
            for version in ended[:max(0, len(ended) - MAX_ENDED_RECORDS)]:
                del slot.records[version]
        for version in unwanted:
            slot.store.discard(version)

    # ------------------------------------------------------------------ queries

    def _slot(self, name: str) -> _ModelSlot:
        slot = self._slots.get(name)
        if slot is None:
            raise ServableNotFound(f"Servable not found for request: Latest({name})")
        return slot

    def label_version(self, name: str, label: str) -> int:
        """The version a configured label points at; ServableNotFound when the label is
        unknown (the REST routes answer that with TF Serving's 400)."""
        version = self._slot(name).config.version_labels.get(label)
        if version is None:
            raise ServableNotFound(f"Unrecognized servable version label: {label}")
        return version

    def resolve(self, name: str, version: int | None = None) -> tuple[int, Any]:
        """``(version, model)`` to answer with: the latest served one, or that version.

        Raises ServableNotFound (unknown model or version) or ServableUnavailable (known
        model, nothing loaded yet).
        """
        if version is not None and name not in self._slots:
            raise ServableNotFound(f"Servable not found for request: Specific({name}, {version})")
        slot = self._slot(name)
        served = slot.served  # one read: the snapshot cannot change under us
        if version is None:
            if served.latest is None:
                raise ServableUnavailable(
                    f"Model {name} has no version available yet; see GET /v1/models/{name}")
            return served.latest, served.models[served.latest]
        model = served.models.get(version)
        if model is None:
            raise ServableNotFound(f"Servable not found for request: Specific({name}, {version})")
        return version, model

    def status(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        """``model_version_status`` entries, highest version first."""
        slot = self._slots.get(name)
        if slot is None:
            if version is not None:
                raise ServableNotFound(f"Could not find version {version} of model {name}")
            raise ServableNotFound(f"Could not find any versions of model {name}")
        with self._lock:
            records = sorted(slot.records.values(), key=lambda r: r.version, reverse=True)
            entries = [r.as_status() for r in records if version is None or r.version == version]
        if not entries:
            if version is None:
                raise ServableNotFound(f"Could not find any versions of model {name}")
            raise ServableNotFound(f"Could not find version {version} of model {name}")
        return entries

    def available_versions(self, name: str) -> list[int]:
        """The versions of ``name`` that can be asked for (state AVAILABLE), lowest first;
        none for an unknown model."""
        slot = self._slots.get(name)
        return [] if slot is None else sorted(slot.served.models)

    def versions_loaded(self) -> dict[str, int]:
        """``{model name: number of AVAILABLE versions}`` for the metrics gauge."""
        return {name: len(slot.served.models) for name, slot in self._slots.items()}
