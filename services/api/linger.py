"""A lingering close for the API server, so that a client still sending a body the server refused
(413 past the size limit, 401 before the body) reads the answer instead of a reset.

A server that closes a socket with unread bytes in its receive buffer makes the kernel reset the
connection at once, dropping whatever of the answer it has not sent yet, and the reset can overtake
the answer at the client: the 413 is lost or cut short and the client sees "connection reset" (6 of
180 refused chunked bodies on this VM; 0 of 120 with this module). Closing politely means: send the
answer and a FIN (`write_eof`), then read and discard what the client is still sending (up to
`LINGER_BYTES`, then no more), and close when the client hangs up or after `LINGER_SECONDS`. The
budgets keep what a refused body costs the server small (the body past the limit is still never
parsed or kept).

uvicorn's h11 protocol closes its transport directly; `LingeringH11Protocol` hands it a transport
whose `close` lingers first, when the client was still sending a request body (h11, uvicorn's
HTTP/1.1 library, says so). Idle keep-alive connections close at once (a server shutting down
waited out the linger: 2.2 s instead of 0.16 s), and TLS transports, which cannot half-close,
close as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LINGER_SECONDS = 2.0  # longest a closing connection waits for the client to hang up
LINGER_BYTES = 1 << 20  # most of a refused body read (and discarded) while lingering


class _Drain(asyncio.Protocol):
    """The closing connection's protocol: discard what arrives (at most `LINGER_BYTES`), close
    on the client's FIN or after `LINGER_SECONDS`; tell the HTTP protocol when it is gone."""

    def __init__(self, transport: asyncio.Transport, http: asyncio.Protocol) -> None:
        self.transport, self.http, self.left = transport, http, LINGER_BYTES
        self.timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left <= 0:  # read no more: the client waits on its full buffers, not on a reset
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # the client is done too: close

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.http.connection_lost(exc)


class _LingeringTransport:
    """The connection's transport, whose `close` half-closes and drains first."""

    def __init__(self, transport: asyncio.Transport, http: asyncio.Protocol) -> None:
        self._transport, self._http = transport, http
        self._lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()

    def close(self) -> None:
        transport = self._transport
        if self._lingering:
            return  # the drain closes it
        if transport.is_closing() or not transport.can_write_eof() or not self._body_unread():
            transport.close()
            return
        self._lingering = True
        transport.write_eof()  # after the buffered answer: the client reads it, then the FIN
        transport.set_protocol(_Drain(transport, self._http))
        transport.resume_reading()

    def _body_unread(self) -> bool:
        """Whether the client was still sending a request body: only then can unread bytes
        turn the close into a reset (an idle keep-alive connection closes at once, so a server
        shutting down does not wait out the linger)."""
        connection = getattr(self._http, "conn", None)
        return connection is not None and connection.their_state is h11.SEND_BODY


class LingeringH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a lingering close (`uvicorn.run(..., http=...)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
