"""Container exits as the runtime reports them, instead of by polling.

CRI's GetContainerEvents arrived after containerd 1.6, which the agent runs
against here; containerd's own event service answers on the same socket, so
the agent subscribes to it (the filters keep the stream to the CRI plugin's
namespace, task exits and container deletes). A runtime without it (CRI-O, a
CRI relay) answers UNIMPLEMENTED and the relister keeps polling.

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
FILTERS = (f'namespace=="{CRI_NAMESPACE}",topic=="/tasks/exit"',
           f'namespace=="{CRI_NAMESPACE}",topic=="/containers/delete"')
_EXIT = "/tasks/exit"
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
        if envelope.topic == _EXIT:
            exit_ = events_pb.TaskExit()
            exit_.ParseFromString(envelope.event.value)
            if exit_.id and exit_.id != exit_.container_id:
                return  # an exec (probe, kubectl exec) ended, not the container
            self._on_change(exit_.container_id)
        else:
            self._on_change("")
