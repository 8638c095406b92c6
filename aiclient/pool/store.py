"""provider_pools.json on disk: read, validate, read-merge-write atomically under a lock.

The only module that touches the pool file. Every function here is blocking and is
called through `asyncio.to_thread` from the event loop. A write never truncates the
file in place: temp file in the same folder, fsync, rename over, folder fsync, file
mode and owner kept. An edit the user made since our last sync is merged, never lost.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import fcntl
import glob
import json
import logging
import os
import stat
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .models import SERVER_FIELDS, NodeState, ProviderNode
from .schema import assign_missing_uuids, validate_pools

__all__ = [
    "JsonStyle",
    "LoadedPools",
    "PoolFile",
    "SyncResult",
    "atomic_write",
    "merge_field",
    "parse_pools",
    "reconcile",
]

Fields = dict[str, Any]

logger = logging.getLogger(__name__)


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


def _load_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func: Callable[..., int] = libc.renameat2
    except (OSError, AttributeError):
        return None
    return func


_renameat2 = _load_renameat2() if sys.platform.startswith("linux") else None
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: str, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        return False
    if (
        _renameat2(
            _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
        )
        == 0
    ):
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        _renameat2 = None  # this filesystem cannot exchange; plain rename from now on
        return False
    raise OSError(err, os.strerror(err), str(second))


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_write(path: Path, data: bytes) -> bytes | None:
    """Replace `path` with `data` so that readers see the old or the new file, whole.

    Where the platform can swap two files atomically, returns the exact bytes that were
    replaced, so a caller can tell whether someone saved the file since it read it.
    Refuses (PermissionError) to replace a file its owner made read-only.
    """
    st = os.stat(path)
    if not st.st_mode & stat.S_IWUSR:
        raise PermissionError(errno.EACCES, "the pool file is read-only", str(path))
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    replaced: bytes | None = None
    try:
        os.fchmod(fd, st.st_mode & 0o7777)
        with contextlib.suppress(PermissionError):
            os.fchown(fd, st.st_uid, st.st_gid)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if _exchange(tmp, path):
            with open(tmp, "rb") as old:
                replaced = old.read()
            os.unlink(tmp)
        else:
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
    return replaced


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
    if name in _NEWEST and disk is not None and mine is not None:
        return max(str(disk), str(mine))
    return disk


_NEWEST = ("lastUsed", "lastErrorTime", "stateSince", "cooldownUntil")


def reconcile(base: Fields, disk: Mapping[str, Any], merged: Fields) -> None:
    """Make `isHealthy` and `state` agree after a field-by-field merge.

    Whichever of the two was edited on disk wins: the user writing `isHealthy: true`
    brings the instance back (the original's way), writing `state: "active"` does too,
    and `isHealthy: false` alone means standby(manual).
    """
    healthy = merged.get("isHealthy") is not False
    active = merged.get("state", "active") == "active"
    if healthy == active:
        return
    flag_edited = (disk.get("isHealthy") is not False) != (
        base.get("isHealthy") is not False
    )
    if flag_edited or disk.get("state") == base.get("state"):
        if healthy:
            merged.update(state="active", stateReason=None, cooldownUntil=None)
        else:
            merged.update(state="standby", stateReason="manual")
    else:
        merged["isHealthy"] = active


@dataclass(slots=True)
class SyncResult:
    written: bool = False
    merged: dict[str, Fields] = field(default_factory=dict)
    nodes: list[ProviderNode] | None = None  # the new config when the file changed
    error: ConfigError | None = None


_MAX_ROUNDS = 5
_HISTORY = 256
_STAMPS = ("lastUsed", "lastErrorTime")
_OTHERS = tuple(name for name in SERVER_FIELDS if name not in _STAMPS)


class PoolFile:
    """The pool file as last synced: its bytes, document and per-instance server fields."""

    def __init__(self, path: Path, global_value: Callable[[str], Any]) -> None:
        self.path = path
        self._global_value = global_value
        self.last_bytes: bytes | None = None
        self.data: dict[str, Any] = {}
        self.style = JsonStyle()
        # What the file held after each of our recent syncs, newest last: the base of
        # a three-way merge is the version the user's edit started from.
        self.history: deque[dict[str, Fields]] = deque(maxlen=_HISTORY)
        self.dirty_doc = False

    def load(self) -> LoadedPools:
        """Read and validate the file (blocking); remember it as the sync point.

        Also removes temp files a killed writer left behind: every writer holds the
        lock while its temp file exists, so under the lock any such file is stale.
        """
        with _locked(self.path):
            raw = self.path.read_bytes()
            self._remove_stale_temp_files()
        loaded = parse_pools(raw, self.path, self._global_value)
        self.last_bytes = loaded.raw
        self.data = loaded.data
        self.style = loaded.style
        self.history.clear()
        self.history.append(
            {node.uuid: _server_fields(node.settings) for node in loaded.nodes}
        )
        self.dirty_doc = loaded.uuids_added > 0
        return loaded

    def _remove_stale_temp_files(self) -> None:
        prefix = _temp_prefix(self.path)
        for leftover in self.path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
                logger.info("removed %s left behind by an interrupted write", leftover)

    def sync(self, mine: Mapping[str, Fields]) -> SyncResult:
        """Read-merge-write under the lock (blocking). `mine` is memory's server fields.

        When the file changed since the last sync (the user's edit, or another
        process's write) its new config comes back in `nodes` and its values are merged
        field by field. A file that no longer parses is left untouched, byte for byte:
        the result carries the error and nothing is written until it is fixed. A save
        that lands between our read and our rename is detected (where the platform can
        swap files atomically), merged in, and never lost.
        """
        with _locked(self.path):
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return SyncResult(
                    error=ConfigError(f"{self.path}: the pool file is missing")
                )
            result = SyncResult()
            source = on_disk = raw  # what to merge from; what the file holds now
            raced = False
            data, style, out = self.data, self.style, raw
            for _ in range(_MAX_ROUNDS):
                try:
                    data, style, nodes = self._document(source)
                except ConfigError as exc:
                    if raced:  # put the user's newer (broken) save back
                        atomic_write(self.path, source)
                    return SyncResult(error=exc)
                if nodes is not None:
                    result.nodes = nodes
                known = {node.uuid for node in nodes} if nodes is not None else None
                result.merged = self._merge_into(data, mine, known)
                out = style.render(data)
                if out == on_disk:
                    break
                replaced = atomic_write(self.path, out)
                result.written = True
                if replaced is None or replaced == on_disk:
                    break
                logger.info(
                    "%s was saved while the server wrote it; merging that save", self.path
                )
                source, on_disk, raced = replaced, out, True
                self.last_bytes = None  # the racing save is new to us
            self.last_bytes = out
            self.data = data
            self.style = style
            self.history.append(result.merged)
            self.dirty_doc = False
            return result

    def _document(
        self, raw: bytes
    ) -> tuple[dict[str, Any], JsonStyle, list[ProviderNode] | None]:
        if raw == self.last_bytes:
            # A copy: a write that fails must leave the sync point untouched.
            return copy.deepcopy(self.data), self.style, None
        loaded = parse_pools(raw, self.path, self._global_value)
        return loaded.data, loaded.style, loaded.nodes

    def _base_version(self, data: Mapping[str, Any]) -> dict[str, Fields]:
        """The recent version of ours that an edited file most likely started from.

        An editor may save a copy read minutes ago: its counters are stale, not a
        reset. Only the server writes the timestamps, and they change with every
        request, so they date a copy: the base is the version whose timestamps the
        file repeats most often. Writes within one millisecond repeat them, so among
        those the version whose other server fields (counters, state) the file repeats
        most often is the base, and the newest of any still tied.
        """
        disk = {
            inst["uuid"]: inst
            for inst in _instances(data)
            if isinstance(inst.get("uuid"), str)
        }
        best: dict[str, Fields] = {}
        best_score = (-1, -1)
        for version in reversed(self.history):
            stamps = _agreement(version, disk, _STAMPS)
            if stamps < best_score[0]:
                continue
            score = (stamps, _agreement(version, disk, _OTHERS))
            if score > best_score:
                best, best_score = version, score
        return best

    def _merge_into(
        self,
        data: dict[str, Any],
        mine: Mapping[str, Fields],
        new_config: set[str] | None,
    ) -> dict[str, Fields]:
        """Merge memory's fields into `data` in place; fill in instances that are new.

        `new_config` holds the uuids of the file's served instances when it changed.
        """
        merged: dict[str, Fields] = {}
        base_version = (
            self._base_version(data)
            if new_config is not None
            else (self.history[-1] if self.history else {})
        )
        for instances in data.values():
            if not isinstance(instances, list):
                continue
            for inst in instances:
                uid = inst.get("uuid") if isinstance(inst, dict) else None
                if not isinstance(uid, str):
                    continue
                if uid in mine:
                    base = base_version.get(uid, {})
                    # A field missing from the file was not edited: a copy saved from
                    # before the server first wrote it simply lacks it (null is an edit).
                    disk = {
                        name: inst[name] if name in inst else base.get(name)
                        for name in SERVER_FIELDS
                    }
                    result = {
                        name: merge_field(name, base.get(name), disk[name], mine[uid][name])
                        for name in SERVER_FIELDS
                    }
                    reconcile(base, disk, result)
                    inst.update(result)
                elif new_config is not None and uid in new_config:
                    defaults = NodeState.from_fields(inst).to_fields()
                    for name in SERVER_FIELDS:
                        inst.setdefault(name, defaults[name])
                else:
                    continue
                merged[uid] = {name: inst[name] for name in SERVER_FIELDS}
        return merged


def _agreement(
    version: Mapping[str, Fields],
    disk: Mapping[str, Mapping[str, Any]],
    names: tuple[str, ...],
) -> int:
    """How many of the fields `names` the file's instances repeat from `version`."""
    count = 0
    for uid, fields in version.items():
        inst = disk.get(uid)
        if inst is not None:
            count += sum(inst.get(name) == fields.get(name) for name in names)
    return count


def _instances(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for instances in data.values():
        if isinstance(instances, list):
            yield from (inst for inst in instances if isinstance(inst, dict))


def _server_fields(settings: Mapping[str, Any]) -> Fields:
    return {name: settings.get(name) for name in SERVER_FIELDS}
