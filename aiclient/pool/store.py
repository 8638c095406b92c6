"""provider_pools.json on disk: read, validate, read-merge-write atomically under a lock.

The only module that touches the pool file. Every function here is blocking and is
called through `asyncio.to_thread` from the event loop. A write never truncates the
file in place: temp file in the same folder, fsync, rename over, folder fsync, file
mode and owner kept. An edit the user made since our last sync is merged, never lost.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .models import SERVER_FIELDS, ProviderNode
from .schema import assign_missing_uuids, validate_pools

__all__ = [
    "JsonStyle",
    "LoadedPools",
    "PoolFile",
    "SyncResult",
    "atomic_write",
    "merge_field",
    "parse_pools",
]

Fields = dict[str, Any]


@dataclass(frozen=True, slots=True)
class JsonStyle:
    """How the user formatted the file, so our writes keep it."""

    indent: str | None = "  "
    compact: bool = False
    newline: bool = True

    @classmethod
    def detect(cls, text: str) -> JsonStyle:
        stripped = text.lstrip()
        newline = text.endswith("\n")
        body = stripped[1:] if stripped.startswith("{") else stripped
        if not body.startswith(("\n", "\r")):
            return cls(indent=None, compact='": ' not in text, newline=newline)
        for line in body.splitlines()[1:]:
            if line.strip():
                indent = line[: len(line) - len(line.lstrip())]
                return cls(indent=indent or "  ", newline=newline)
        return cls(newline=newline)

    def render(self, data: Any) -> bytes:
        if self.indent is None:
            separators = (",", ":") if self.compact else (", ", ": ")
            text = json.dumps(data, ensure_ascii=False, separators=separators)
        else:
            text = json.dumps(data, ensure_ascii=False, indent=self.indent)
        return (text + ("\n" if self.newline else "")).encode("utf-8")


@dataclass(slots=True)
class LoadedPools:
    data: dict[str, Any]
    nodes: list[ProviderNode]
    raw: bytes
    style: JsonStyle
    uuids_added: int = 0


def parse_pools(raw: bytes, path: Path, global_value: Callable[[str], Any]) -> LoadedPools:
    """Parse and validate the pool file's bytes; fill in missing uuids in `data`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ConfigError(f"{path}: the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: top level must be an object keyed by provider type, "
            f"got {type(data).__name__}"
        )
    added = assign_missing_uuids(data)
    nodes = validate_pools(data, path, global_value)
    return LoadedPools(data, nodes, raw, JsonStyle.detect(text), added)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, whole."""
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, (st.st_mode & 0o7777) if st else 0o600)
        if st is not None:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, st.st_uid, st.st_gid)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive cross-process lock on a sidecar file beside `path`."""
    lock_path = path.parent / f".{path.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def merge_field(name: str, base: Any, disk: Any, mine: Any) -> Any:
    """Three-way merge of one server field of one instance.

    `base` is the value at our last sync, `disk` the file's value now, `mine` memory's.
    A field only one side changed takes that side's value. Counters merge as increments
    (so processes sharing the file add up), timestamps keep the newest, and anything
    else the user (or another process) changed on disk wins.
    """
    if name in ("usageCount", "errorCount"):
        return max(0, (disk or 0) + (mine or 0) - (base or 0))
    if name == "isHealthy":  # an absent flag means healthy
        base, disk = base is not False, disk is not False
    if disk == base:
        return mine
    if mine == base:
        return disk
    if name in ("lastUsed", "lastErrorTime") and disk is not None and mine is not None:
        return max(str(disk), str(mine))
    return disk


@dataclass(slots=True)
class SyncResult:
    written: bool
    merged: dict[str, Fields] = field(default_factory=dict)
    disk_changed: bool = False
    error: ConfigError | None = None


class PoolFile:
    """The pool file as last synced: its bytes, document and per-instance server fields."""

    def __init__(self, path: Path, global_value: Callable[[str], Any]) -> None:
        self.path = path
        self._global_value = global_value
        self.last_bytes: bytes | None = None
        self.data: dict[str, Any] = {}
        self.style = JsonStyle()
        self.base: dict[str, Fields] = {}
        self.dirty_doc = False

    def load(self) -> LoadedPools:
        """Read and validate the file (blocking); remember it as the sync point."""
        raw = self.path.read_bytes()
        loaded = parse_pools(raw, self.path, self._global_value)
        self.adopt(loaded)
        return loaded

    def adopt(self, loaded: LoadedPools) -> None:
        self.last_bytes = loaded.raw
        self.data = loaded.data
        self.style = loaded.style
        self.base = {node.uuid: _server_fields(node.settings) for node in loaded.nodes}
        self.dirty_doc = loaded.uuids_added > 0

    def sync(self, mine: Mapping[str, Fields]) -> SyncResult:
        """Read-merge-write under the lock (blocking). `mine` is memory's server fields.

        A file that no longer parses is left untouched, byte for byte: the result
        carries the error and nothing is written until the user fixes it.
        """
        with _locked(self.path):
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                error = ConfigError(f"{self.path}: the pool file is missing")
                return SyncResult(written=False, disk_changed=True, error=error)
            disk_changed = raw != self.last_bytes
            if not disk_changed:
                # A copy: a write that fails must leave the sync point untouched.
                data = copy.deepcopy(self.data)
                style = self.style
            else:
                try:
                    loaded = parse_pools(raw, self.path, self._global_value)
                except ConfigError as exc:
                    return SyncResult(written=False, disk_changed=True, error=exc)
                data, style = loaded.data, loaded.style
            merged = self._merge_into(data, mine)
            out = style.render(data)
            written = False
            if out != raw:
                atomic_write(self.path, out)
                written = True
            self.last_bytes = out
            self.data = data
            self.style = style
            self.base.update(merged)
            self.dirty_doc = False
            return SyncResult(written=written, merged=merged, disk_changed=disk_changed)

    def _merge_into(
        self, data: dict[str, Any], mine: Mapping[str, Fields]
    ) -> dict[str, Fields]:
        merged: dict[str, Fields] = {}
        for instances in data.values():
            if not isinstance(instances, list):
                continue
            for inst in instances:
                if not isinstance(inst, dict):
                    continue
                uid = inst.get("uuid")
                if not isinstance(uid, str) or uid not in mine:
                    continue
                base = self.base.get(uid, {})
                result: Fields = {}
                for name in SERVER_FIELDS:
                    value = merge_field(
                        name, base.get(name), inst.get(name), mine[uid].get(name)
                    )
                    inst[name] = value
                    result[name] = value
                merged[uid] = result
        return merged


def _server_fields(settings: Mapping[str, Any]) -> Fields:
    return {name: settings.get(name) for name in SERVER_FIELDS}
