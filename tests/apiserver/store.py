"""Versioned object storage: one global resourceVersion counter (etcd's revision), every version kept
since the last compaction (exact reads at an older RV), the event log that watches replay, and the
live watchers. Used only from the double's event loop thread, so it needs no locks."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str, str]  # (resource id "group/resource", namespace or "", name)


def etcd_order(key: Key) -> str:
    """Objects are listed in etcd key order: `<namespace>/<name>` (or `<name>`) as a byte string."""
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


@dataclass
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: Key
    obj: dict[str, Any]
    prev: dict[str, Any] | None


@dataclass(eq=False)
class Watcher:
    """One open watch; the store pushes every event of its resource, the handler filters."""
    resource: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    expired: bool = False

    def close_expired(self) -> None:
        self.expired = True
        self.queue.put_nowait(None)


class Store:
    def __init__(self) -> None:
        self.rv = 0
        self.compacted = 0
        self._objects: dict[Key, dict[str, Any]] = {}
        self._history: dict[Key, list[tuple[int, dict[str, Any] | None]]] = {}
        self._events: list[Event] = []
        self._watchers: set[Watcher] = set()
        self.changed = asyncio.Event()

    # ---- reads -----------------------------------------------------------------------------

    def get(self, key: Key) -> dict[str, Any] | None:
        obj = self._objects.get(key)
        return copy.deepcopy(obj) if obj is not None else None

    def items(self, resource: str, namespace: str | None) -> list[dict[str, Any]]:
        """Current objects of a resource (optionally one namespace), in key order."""
        keys = sorted((k for k in self._objects if k[0] == resource and (namespace is None or k[1] == namespace)),
                      key=etcd_order)
        return [copy.deepcopy(self._objects[k]) for k in keys]

    def items_at(self, resource: str, namespace: str | None, rv: int) -> list[dict[str, Any]]:
        """Objects as they were at revision `rv` (caller checks rv >= compacted)."""
        out = []
        for k in sorted(self._history, key=etcd_order):
            if k[0] != resource or (namespace is not None and k[1] != namespace):
                continue
            state = None
            for vrv, obj in self._history[k]:
                if vrv <= rv:
                    state = obj
                else:
                    break
            if state is not None:
                out.append(copy.deepcopy(state))
        return out

    def keys(self) -> Iterator[Key]:
        return iter(list(self._objects))

    # ---- writes ----------------------------------------------------------------------------

    def put(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Stores a new version under the next revision; ADDED or MODIFIED event."""
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        prev = self._objects.get(key)
        self._objects[key] = obj
        self._history.setdefault(key, []).append((self.rv, obj))
        self._emit(Event(self.rv, "MODIFIED" if prev is not None else "ADDED", key, obj, prev))
        return copy.deepcopy(obj)

    def remove(self, key: Key) -> dict[str, Any]:
        """Deletes under the next revision; the DELETED event carries the last state with that revision."""
        prev = self._objects.pop(key)
        self.rv += 1
        last = copy.deepcopy(prev)
        last["metadata"]["resourceVersion"] = str(self.rv)
        self._history.setdefault(key, []).append((self.rv, None))
        self._emit(Event(self.rv, "DELETED", key, last, prev))
        return copy.deepcopy(last)

    def _emit(self, ev: Event) -> None:
        self._events.append(ev)
        for w in list(self._watchers):
            if w.resource == ev.key[0]:
                w.queue.put_nowait(ev)
        self.changed.set()
        self.changed = asyncio.Event()

    # ---- watch -----------------------------------------------------------------------------

    def events_since(self, resource: str, rv: int) -> list[Event]:
        return [e for e in self._events if e.rv > rv and e.key[0] == resource]

    def add_watcher(self, w: Watcher) -> None:
        self._watchers.add(w)

    def remove_watcher(self, w: Watcher) -> None:
        self._watchers.discard(w)

    # ---- compaction ------------------------------------------------------------------------

    def compact(self) -> None:
        """Forget every revision older than the current one; open watches end with 410."""
        self.compacted = self.rv
        self._events.clear()
        for k in list(self._history):
            if k in self._objects:
                self._history[k] = [(int(self._objects[k]["metadata"]["resourceVersion"]), self._objects[k])]
            else:
                del self._history[k]
        for w in list(self._watchers):
            w.close_expired()
        self._watchers.clear()
