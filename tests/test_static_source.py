"""The static pod source against real files and real inotify."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from nodeagent.api.types import Pod, Toleration
from nodeagent.sources import inotify
from nodeagent.sources.inotify import DirectoryNotFound, DirectoryWatcher, NotADirectory
from nodeagent.api.times import rfc3339_nano
from nodeagent.sources.static import (
    CONFIG_HASH_ANNOTATION, CONFIG_SEEN_ANNOTATION, CONFIG_SOURCE_ANNOTATION, MAX_MANIFEST_BYTES,
    StaticPodSource, StaticSnapshot, apply_static_defaults, static_pod_uid,
)

NODE = "Node-1"
QUIET = 0.3  # long enough for a coalesced batch (50 ms) and its sync to land

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  containers:
  - name: app
    image: {image}
"""


def manifest(name: str = "web", image: str = "busybox:1.36") -> str:
    return POD.format(name=name, image=image)


def write(path: Path, text: str) -> None:
    path.write_text(text)


class Recorder:
    """Collects on_change snapshots and lets a test wait for one."""

    def __init__(self) -> None:
        self.snapshots: list[StaticSnapshot] = []
        self._changed = asyncio.Event()

    def __call__(self, snapshot: StaticSnapshot) -> None:
        self.snapshots.append(snapshot)
        self._changed.set()

    @property
    def last(self) -> StaticSnapshot:
        return self.snapshots[-1]

    async def wait_for(self, predicate: Callable[[StaticSnapshot], bool],
                       timeout: float = 1.0) -> StaticSnapshot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.snapshots and predicate(self.last)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching snapshot within {timeout}s; last: "
                                     f"{self.snapshots[-1] if self.snapshots else None}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return self.last

    async def synced(self) -> StaticSnapshot:
        return await self.wait_for(lambda s: True)


@asynccontextmanager
async def running(path: Path, node: str = NODE, resync_period: float = 20.0
                  ) -> AsyncIterator[tuple[StaticPodSource, Recorder]]:
    recorder = Recorder()
    source = StaticPodSource(path, node, recorder, resync_period=resync_period)
    task = asyncio.create_task(source.run())
    try:
        await recorder.synced()
        yield source, recorder
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def names(snapshot: StaticSnapshot) -> list[str]:
    return [p.metadata.name for p in snapshot.pods]


def only_pod(snapshot: StaticSnapshot) -> Pod:
    assert len(snapshot.pods) == 1, snapshot
    return snapshot.pods[0]


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


# -- lifecycle through inotify --------------------------------------------------------

async def test_initial_empty_scan_is_reported(manifests: Path) -> None:
    async with running(manifests) as (source, rec):
        assert rec.snapshots == [StaticSnapshot()]
        assert source.snapshot == StaticSnapshot()


async def test_add_file_gives_defaulted_pod(manifests: Path) -> None:
    async with running(manifests) as (source, rec):
        write(manifests / "web.yaml", manifest())
        pod = only_pod(await rec.wait_for(lambda s: bool(s.pods)))
    meta = pod.metadata
    assert meta.name == "web-node-1"
    assert meta.namespace == "default"
    assert re.fullmatch(r"[0-9a-f]{32}", meta.uid)
    assert meta.annotations[CONFIG_HASH_ANNOTATION] == meta.uid
    assert meta.annotations[CONFIG_SOURCE_ANNOTATION] == "file"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z",
                        meta.annotations[CONFIG_SEEN_ANNOTATION])
    assert meta.labels == {"app": "web"}
    assert pod.spec.node_name == NODE
    assert Toleration(operator="Exists", effect="NoExecute") in pod.spec.tolerations
    assert pod.status.phase == "Pending"
    assert source.snapshot.pods == [pod]
    assert meta.uid == static_pod_uid_of(manifests / "web.yaml")


def static_pod_uid_of(path: Path) -> str:
    """The UID computed independently, from parse_manifest's pod."""
    from nodeagent.api.manifest import parse_manifest
    [(_, pod)] = parse_manifest(path.read_bytes(), str(path), static=True).pods
    return static_pod_uid(pod, NODE, str(path))


async def test_edit_gives_new_uid_and_delete_removes(manifests: Path) -> None:
    async with running(manifests) as (_, rec):
        write(manifests / "web.yaml", manifest())
        first = only_pod(await rec.wait_for(lambda s: bool(s.pods)))
        write(manifests / "web.yaml", manifest(image="busybox:1.37"))
        second = only_pod(await rec.wait_for(
            lambda s: bool(s.pods) and s.pods[0].metadata.uid != first.metadata.uid))
        assert second.metadata.name == first.metadata.name
        assert second.spec.containers[0].image == "busybox:1.37"
        (manifests / "web.yaml").unlink()
        await rec.wait_for(lambda s: not s.pods)


async def test_editor_style_rename_is_one_update(manifests: Path, tmp_path: Path) -> None:
    async with running(manifests) as (_, rec):
        # vim-like: write a hidden temp file in the directory, then rename over.
        temp = manifests / ".web.yaml.swp"
        write(temp, manifest())
        os.rename(temp, manifests / "web.yaml")
        await rec.wait_for(lambda s: bool(s.pods))
        await asyncio.sleep(QUIET)
        assert len(rec.snapshots) == 2  # initial + exactly one update
        # Written elsewhere then moved in (kubeadm, config management).
        staging = tmp_path / "staging.yaml"
        write(staging, manifest("db"))
        os.rename(staging, manifests / "db.yaml")
        await rec.wait_for(lambda s: len(s.pods) == 2)
        await asyncio.sleep(QUIET)
        assert len(rec.snapshots) == 3
        assert names(rec.last) == ["db-node-1", "web-node-1"]  # file-name order


async def test_hidden_files_and_subdirectories_ignored(manifests: Path) -> None:
    write(manifests / ".hidden.yaml", manifest("hidden"))
    (manifests / "sub").mkdir()
    write(manifests / "sub" / "nested.yaml", manifest("nested"))
    async with running(manifests) as (_, rec):
        write(manifests / ".another", manifest("another"))
        write(manifests / "web.yaml", manifest())
        snapshot = await rec.wait_for(lambda s: bool(s.pods))
        await asyncio.sleep(QUIET)
        assert names(rec.last) == ["web-node-1"] == names(snapshot)
        assert rec.last.errors == []


async def test_invalid_file_reported_others_unaffected(manifests: Path) -> None:
    write(manifests / "a-web.yaml", manifest())
    async with running(manifests) as (_, rec):
        good = only_pod(rec.last)
        write(manifests / "b-bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\n"
                                        "spec: {containers: [{name: c}]}\n")
        snapshot = await rec.wait_for(lambda s: bool(s.errors))
        assert snapshot.pods == [good]
        [error] = snapshot.errors
        assert error.source == str(manifests / "b-bad.yaml")
        assert str(manifests / "b-bad.yaml") in str(error)
        [reported] = snapshot.report()["errors"]
        assert reported["file"] == str(manifests / "b-bad.yaml")
        assert reported["document"] == 1
        assert reported["error"] == str(error)
        # Fixing it clears the error and adds the pod; the good pod is untouched.
        write(manifests / "b-bad.yaml", manifest("bad"))
        snapshot = await rec.wait_for(lambda s: not s.errors and len(s.pods) == 2)
        assert snapshot.pods[0] == good


async def test_unparseable_yaml_is_an_error(manifests: Path) -> None:
    write(manifests / "broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [\n")
    write(manifests / "web.yaml", manifest())
    async with running(manifests) as (_, rec):
        assert names(rec.last) == ["web-node-1"]
        assert [e.source for e in rec.last.errors] == [str(manifests / "broken.yaml")]


async def test_oversized_file_is_an_error(manifests: Path) -> None:
    with open(manifests / "huge.yaml", "wb") as fh:
        fh.truncate(MAX_MANIFEST_BYTES + 1)
    async with running(manifests) as (_, rec):
        [error] = rec.last.errors
        assert error.source == str(manifests / "huge.yaml")
        assert "10 MiB" in str(error)


async def test_multi_document_file(manifests: Path) -> None:
    write(manifests / "pods.yaml", manifest("one") + "---\n" + manifest("two"))
    async with running(manifests) as (_, rec):
        assert names(rec.last) == ["one-node-1", "two-node-1"]


async def test_duplicate_names_across_files(manifests: Path) -> None:
    write(manifests / "a.yaml", manifest())
    write(manifests / "b.yaml", manifest(image="nginx:1.27"))
    async with running(manifests) as (_, rec):
        pod = only_pod(rec.last)
        assert pod.spec.containers[0].image == "busybox:1.36"  # the first file wins
        [error] = rec.last.errors
        assert error.source == str(manifests / "b.yaml")
        assert error.pod == "default/web-node-1"
        assert 'pod "default/web-node-1": duplicate pod name' in str(error)
        assert f"already defined in {manifests / 'a.yaml'}" in str(error)


async def test_duplicate_names_in_one_file(manifests: Path) -> None:
    write(manifests / "a.yaml", manifest() + "---\n" + manifest(image="nginx:1.27"))
    async with running(manifests) as (_, rec):
        assert only_pod(rec.last).spec.containers[0].image == "busybox:1.36"
        [error] = rec.last.errors
        assert "duplicate pod name" in str(error)


# -- identity -----------------------------------------------------------------------

async def test_uid_stable_across_agent_restart(manifests: Path) -> None:
    write(manifests / "web.yaml", manifest())
    async with running(manifests) as (_, rec):
        first = only_pod(rec.last)
    async with running(manifests) as (_, rec):
        second = only_pod(rec.last)
    assert first.metadata.uid == second.metadata.uid
    assert first.metadata.name == second.metadata.name


async def test_uid_depends_on_node_and_file(manifests: Path, tmp_path: Path) -> None:
    write(manifests / "web.yaml", manifest())
    async with running(manifests, node="node-a") as (_, rec):
        on_a = only_pod(rec.last)
    async with running(manifests, node="node-b") as (_, rec):
        on_b = only_pod(rec.last)
    assert on_a.metadata.uid != on_b.metadata.uid
    assert (on_a.metadata.name, on_b.metadata.name) == ("web-node-a", "web-node-b")
    os.rename(manifests / "web.yaml", manifests / "other.yaml")
    async with running(manifests, node="node-a") as (_, rec):
        assert only_pod(rec.last).metadata.uid != on_a.metadata.uid


async def test_config_seen_stable_across_rescans(manifests: Path) -> None:
    write(manifests / "web.yaml", manifest())
    async with running(manifests, resync_period=0.05) as (source, rec):
        pod = only_pod(rec.last)
        seen = pod.metadata.annotations[CONFIG_SEEN_ANNOTATION]
        await asyncio.sleep(0.4)  # several full rescans
        assert len(rec.snapshots) == 1  # nothing changed, nothing reported
        assert only_pod(source.snapshot).metadata.annotations[CONFIG_SEEN_ANNOTATION] == seen
        # A comment-only edit is the same pod: same UID, same seen time, no update.
        write(manifests / "web.yaml", "# touched\n" + manifest())
        await asyncio.sleep(QUIET)
        assert len(rec.snapshots) == 1
        assert source.snapshot.pods == [pod]


async def test_snapshots_are_copies(manifests: Path) -> None:
    write(manifests / "web.yaml", manifest())
    async with running(manifests, resync_period=0.05) as (source, rec):
        rec.last.pods[0].status.phase = "Running"  # a consumer scribbles on it
        await asyncio.sleep(0.2)
        assert only_pod(source.snapshot).status.phase == "Pending"
        assert len(rec.snapshots) == 1


# -- the directory itself -----------------------------------------------------------

async def test_directory_created_later_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "later"
    async with running(path, resync_period=0.2) as (_, rec):
        assert rec.snapshots == [StaticSnapshot()]
        path.mkdir()
        write(path / "web.yaml", manifest())
        await rec.wait_for(lambda s: bool(s.pods), timeout=2.0)
        # Once watched, changes arrive through inotify again.
        write(path / "db.yaml", manifest("db"))
        await rec.wait_for(lambda s: len(s.pods) == 2)


async def test_directory_removed_drops_pods(manifests: Path) -> None:
    write(manifests / "web.yaml", manifest())
    async with running(manifests, resync_period=0.2) as (_, rec):
        assert names(rec.last) == ["web-node-1"]
        (manifests / "web.yaml").unlink()
        manifests.rmdir()
        await rec.wait_for(lambda s: not s.pods)
        manifests.mkdir()
        write(manifests / "web.yaml", manifest())
        await rec.wait_for(lambda s: bool(s.pods), timeout=2.0)


async def test_single_file_path(manifests: Path) -> None:
    target = manifests / "web.yaml"
    write(target, manifest())
    write(manifests / "other.yaml", manifest("other"))
    async with running(target) as (_, rec):
        pod = only_pod(rec.last)
        assert pod.metadata.name == "web-node-1"
        write(target, manifest(image="busybox:1.37"))
        await rec.wait_for(lambda s: s.pods[0].spec.containers[0].image == "busybox:1.37")


async def test_failing_on_change_does_not_stop_source(manifests: Path) -> None:
    calls: list[StaticSnapshot] = []

    def handler(snapshot: StaticSnapshot) -> None:
        calls.append(snapshot)
        if len(calls) == 1:
            raise RuntimeError("consumer bug")

    source = StaticPodSource(manifests, NODE, handler)
    task = asyncio.create_task(source.run())
    try:
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.02)
        write(manifests / "web.yaml", manifest())
        for _ in range(50):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.02)
        assert names(calls[-1]) == ["web-node-1"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- helpers and the watcher ----------------------------------------------------------

def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert rfc3339_nano(1_700_000_000_500_000_000) == "2023-11-14T22:13:20.5Z"
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_defaults_keep_existing_uid_and_do_not_duplicate_toleration() -> None:
    pod = Pod()
    pod.metadata.name = "x"
    pod.metadata.uid = "given"
    pod.spec.tolerations.append(Toleration(operator="Exists", effect="NoExecute"))
    apply_static_defaults(pod, "NODE", "/etc/kubernetes/manifests/x.yaml", "now")
    assert pod.metadata.uid == "given"
    assert pod.metadata.name == "x-node"
    assert pod.spec.node_name == "NODE"
    assert pod.spec.tolerations == [Toleration(operator="Exists", effect="NoExecute")]


async def test_watcher_missing_and_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DirectoryNotFound):
        DirectoryWatcher(tmp_path / "missing").open()
    write(tmp_path / "file", "x")
    with pytest.raises(NotADirectory):
        DirectoryWatcher(tmp_path / "file").open()


async def test_watcher_coalesces_and_ends_when_directory_goes(tmp_path: Path) -> None:
    watched = tmp_path / "w"
    watched.mkdir()
    async with DirectoryWatcher(watched) as watcher:
        changes = watcher.changes()
        write(watched / ".tmp", "a")
        os.rename(watched / ".tmp", watched / "a.yaml")
        batch = await asyncio.wait_for(anext(changes), 1)
        assert batch.names == {".tmp", "a.yaml"} and not batch.gone
        (watched / "a.yaml").unlink()
        watched.rmdir()
        batch = await asyncio.wait_for(anext(changes), 1)
        assert batch.gone
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(changes), 1)


async def test_watcher_drops_unwanted_names_and_waits_only_after_a_removal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An editor's dotfile never shows; a complete file is reported without
    waiting; a file moved aside and rewritten a moment later (by another
    thread, 50 ms apart, QUIET stretched to 0.5 s) is one batch, not a
    removal followed by an addition."""
    monkeypatch.setattr(inotify, "QUIET", 0.5)
    write(tmp_path / "a.yaml", "old")
    async with DirectoryWatcher(tmp_path, settle=1.0, wanted=lambda name: not name.startswith(".")) as watcher:
        changes = watcher.changes()
        pending = asyncio.ensure_future(anext(changes))
        write(tmp_path / ".a.yaml.swp", "x")
        await asyncio.sleep(0.1)
        assert not pending.done()
        started = time.monotonic()
        write(tmp_path / ".b.yaml", "b")
        os.rename(tmp_path / ".b.yaml", tmp_path / "b.yaml")
        assert (await asyncio.wait_for(pending, 1)).names == {"b.yaml"}
        assert time.monotonic() - started < 0.25

        def editor() -> None:
            os.rename(tmp_path / "a.yaml", tmp_path / "a.yaml~")
            time.sleep(0.05)
            write(tmp_path / "a.yaml", "new")
        moved = asyncio.ensure_future(asyncio.to_thread(editor))
        batch = await asyncio.wait_for(anext(changes), 2)
        await moved
        assert batch.names == {"a.yaml", "a.yaml~"}


async def test_watcher_close_ends_iteration(tmp_path: Path) -> None:
    watcher = DirectoryWatcher(tmp_path)
    watcher.open()
    changes = watcher.changes()
    pending = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0.05)
    watcher.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 1)
    watcher.close()  # idempotent
