"""A `Channel` that records everything it carries into an event store.

`RecordingChannel` wraps any channel: every message it sends is recorded as sent by
`local_sender`, every message it receives as sent by the other side, and the
connection's opening and closing become `connection_opened` / `connection_closed`
lifecycle events. This is how the client's own traffic is recorded (`p3log pos
--record DIR`), and how the replayer records its runs.

Order: a message is recorded *before* it is sent and right after it is received, with
no checkpoint in between, so a response is never recorded ahead of the request that
caused it (a fast peer can answer before `send()` returns). A send that then fails
is followed by the `connection_closed` event saying why.

The store redacts before anything is written (merchant secrets, card numbers), so
the wrapper hands it the bytes exactly as they crossed the link. `receive_stored`
also returns a message as the store recorded it (redacted): what a replay compares
with a recording, which the same store redacted the same way.
"""

from __future__ import annotations

from typing import Literal

from p3log.net.channel import Channel, ChannelClosed, Transport
from p3log.net.close_codes import NORMAL_CLOSURE
from p3log.store.lifecycle import ConnectionClosed, ConnectionOpened
from p3log.store.log import EventLog

LocalSender = Literal["client", "server"]


class RecordingChannel:
    """Records the messages of `inner` into `log` under `session_id` (see module doc).

    Construction records `connection_opened`; the first of `aclose()` or a
    `ChannelClosed` from the inner channel records `connection_closed`.
    """

    def __init__(
        self, inner: Channel, log: EventLog, session_id: str, local_sender: LocalSender
    ) -> None:
        self._inner = inner
        self._log = log
        self.session_id = session_id
        self._local: LocalSender = local_sender
        self._remote: LocalSender = "server" if local_sender == "client" else "client"
        self._peer = inner.peer
        self._closed = False
        opened = ConnectionOpened(
            transport=inner.transport, peer=self._peer, recorded_by=local_sender
        )
        log.record_lifecycle(session_id, opened)

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def transport(self) -> Transport:
        return self._inner.transport

    async def send(self, data: bytes) -> None:
        if not self._closed:
            self._log.record_message(self.session_id, self._local, data)
        try:
            await self._inner.send(data)
        except ChannelClosed as exc:
            self._record_closed(self._remote, exc.code, exc.reason)
            raise

    async def receive(self) -> bytes:
        data = await self._receive()
        self._log.record_message(self.session_id, self._remote, data)
        return data

    async def receive_stored(self) -> tuple[bytes, bytes]:
        """The next message: the bytes as they crossed the link, and as the store
        recorded them (after its redaction)."""
        data = await self._receive()
        stored = self._log.record_message(self.session_id, self._remote, data).wire_bytes
        assert stored is not None  # a wire event always holds its bytes
        return data, stored

    async def _receive(self) -> bytes:
        try:
            return await self._inner.receive()
        except ChannelClosed as exc:
            self._record_closed(self._remote, exc.code, exc.reason)
            raise

    async def aclose(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        self._record_closed(self._local, code, reason)
        await self._inner.aclose(code, reason)

    def _record_closed(self, by: LocalSender, code: int | None, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        closed = ConnectionClosed(peer=self._peer, by=by, code=code, reason=reason)
        self._log.record_lifecycle(self.session_id, closed)
