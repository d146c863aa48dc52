"""Container exits as the runtime reports them, instead of by polling.

CRI's GetContainerEvents arrived after containerd 1.6, which the agent runs
against here; containerd's own event service answers on the same socket, so
the agent subscribes to it. The filters keep the stream to the CRI plugin's
namespace, task deletes and container deletes: containerd deletes a task
right after its process ended and sends /tasks/delete for a container's own
process only, so exec probes (each an exec process, with a /tasks/exit of its
own) add no traffic. A runtime without it (CRI-O, a CRI-only relay)
answers UNIMPLEMENTED and the relister keeps polling.

Only the fact "something about container X changed" leaves this module: the
relister lists again and works out what changed, so a lost or duplicated
event costs at most one extra relist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import grpc.aio
import structlog

from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import containerd_events_pb2 as events_pb
from nodeagent.cri.pb import containerd_events_pb2_grpc as events_grpc

log = structlog.get_logger("nodeagent.cri")

CRI_NAMESPACE = "k8s.io"  # containerd's CRI plugin keeps its objects here
FILTERS = (f'namespace=="{CRI_NAMESPACE}",topic=="/tasks/delete"',
           f'namespace=="{CRI_NAMESPACE}",topic=="/containers/delete"')
_TASK_DELETE = "/tasks/delete"
RESUBSCRIBE_DELAY = 1.0  # seconds after the stream broke (runtime restart)
OPEN_GRACE = 0.2  # seconds: a refusal (UNIMPLEMENTED) comes well within this


class EventsUnsupported(Exception):
    """The runtime has no event service the agent understands."""


class ContainerEvents:
    """containerd's event stream, reduced to 'container X changed'.

    `live` is true while a subscription is open; callers poll faster while
    it is not. `on_change(container_id)` runs on the event loop.
    """

    def __init__(self, cri: CRIClient, on_change: Callable[[str], None],
                 on_live: Callable[[bool], None] = lambda live: None) -> None:
        self._stub = events_grpc.EventsStub(cri.runtime_channel)
        self._endpoint = cri.endpoint
        self._on_change = on_change
        self._on_live = on_live
        self.live = False

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            self._on_live(live)

    async def follow(self) -> None:
        """Until cancelled; raises EventsUnsupported at once when the runtime
        has no event service."""
        while True:
            call = self._stub.Subscribe(events_pb.SubscribeRequest(filters=FILTERS))
            reader = asyncio.ensure_future(self._read(call))
            try:
                # containerd sends no headers before the first event: a stream
                # not refused within the grace period is open. The relist that
                # follows going live covers what happened before it.
                done, _ = await asyncio.wait({reader}, timeout=OPEN_GRACE)
                if not done:
                    self._set_live(True)
                await reader
                reason = "the runtime ended the event stream"
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self._set_live(False)
                    raise EventsUnsupported(f"{self._endpoint} has no containerd event service") from None
                reason = f"{exc.code().name}: {exc.details()}"
            finally:
                reader.cancel()
                call.cancel()
            if self.live:
                log.info("runtime event stream broke; resubscribing", reason=reason)
            self._set_live(False)
            await asyncio.sleep(RESUBSCRIBE_DELAY)

    async def _read(self, call: grpc.aio.UnaryStreamCall) -> None:
        async for envelope in call:
            self._set_live(True)
            self._handle(envelope)

    def _handle(self, envelope: events_pb.Envelope) -> None:
        if envelope.topic == _TASK_DELETE:
            deleted = events_pb.TaskDelete()
            deleted.ParseFromString(envelope.event.value)
            if deleted.id and deleted.id != deleted.container_id:
                return  # an exec's process (not sent by containerd 1.6; cheap to be sure)
            self._on_change(deleted.container_id)
        else:
            self._on_change("")
