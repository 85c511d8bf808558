"""Connections that cannot hold the server: a deadline to send a whole request, a cap on open connections
(past it the longest-idle connection makes room), and one log line (not one per attempt) when the process runs out of file descriptors.

uvicorn closes a connection only once it has answered on it and then idled (`timeout_keep_alive`): a client
that connects and sends nothing, or trickles its headers or body a byte at a time, keeps its descriptor
forever. `protocol_class` is uvicorn's h11 protocol with a read deadline: from the moment a connection
opens, or its previous answer was sent, the next request (headers and body) must arrive whole within
`--read-timeout` seconds, else the connection is closed. A request being answered has no deadline here.
"""
from __future__ import annotations

import logging
import resource
import time

log = logging.getLogger("minibert.serve")

SHUTDOWN_DEADLINE_S = 30  # requests still open this long after SIGTERM are cancelled
SPARE_DESCRIPTORS = 64  # kept for the model's files, logs and the listening socket


def connection_cap(wanted: int = 4096) -> int:
    """The most connections open at once: raises the soft descriptor limit to the hard one, then stays below it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            target = wanted + 2 * SPARE_DESCRIPTORS if hard == resource.RLIM_INFINITY else hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
            soft = max(soft, target)
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - SPARE_DESCRIPTORS))


class _Once:
    """Logs a warning at most once a minute, with how many times it happened since."""

    def __init__(self, message: str):
        self.message, self.count, self.last = message, 0, -1e9

    def __call__(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= 60:
            log.warning("%s (%d time(s) in the last minute)", self.message, self.count)
            self.last, self.count = now, 0


def loop_exception_handler(loop, context) -> None:
    """asyncio's handler, but 'out of descriptors' on accept is one line a minute, not a traceback per try."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in (24, 23):  # EMFILE, ENFILE
        _out_of_descriptors()
        return
    loop.default_exception_handler(context)


_out_of_descriptors = _Once("out of file descriptors: new connections wait; raise `ulimit -n` or lower the load")
_over_cap = _Once("connection cap reached: the longest-waiting idle connections are closed")


def protocol_class(max_connections: int, read_deadline_s: float):
    """uvicorn's h11 protocol with the read deadline and the connection cap (defined on first use: uvicorn is
    an optional dependency)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._deadline = None
            if len(self.connections) > max_connections:
                # Room for the newcomer: close the connection that has waited longest for a request of its own
                # (one being answered is never closed); with none waiting, the newcomer is refused.
                waiting = [c for c in self.connections if c is not self and getattr(c, "_deadline", None) is not None]
                _over_cap()
                if not waiting:
                    transport.close()
                    return
                min(waiting, key=lambda c: c._since).transport.close()
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._since = self.loop.time()
            self._deadline = self.loop.call_later(read_deadline_s, self._expire)

        def _disarm(self) -> None:
            if getattr(self, "_deadline", None) is not None:
                self._deadline.cancel()
                self._deadline = None

        def _receiving(self) -> bool:
            """Whether the next request is not yet in whole (no headers, or part of its body)."""
            return self.conn.their_state in (h11.IDLE, h11.SEND_BODY)

        def _expire(self) -> None:
            self._deadline = None
            if self._receiving() and not self.transport.is_closing():
                log.info("closed a connection that sent no whole request in %.0f s", read_deadline_s)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._receiving():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._receiving():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Protocol
