"""A small TCP proxy for fault injection: latency, dropped connections, refused connections.

A service is pointed at the proxy instead of PostgreSQL or RabbitMQ; the proxy passes bytes
through untouched until a test asks it to misbehave::

    async with TcpProxy("127.0.0.1", 5432) as proxy:   # listens on proxy.port
        proxy.latency = 0.05          # 50 ms added to every chunk, both directions
        proxy.drop_all()              # reset every open connection now
        proxy.refusing = True         # accept and close at once (the dependency is "down")
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency = 0.0
        self.refusing = False
        self.port = 0
        self.connections = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()

    def drop_all(self) -> int:
        """Reset every open connection (RST, as when a network path breaks)."""
        writers = list(self._open)
        for writer in writers:
            _reset(writer)
        self._open.difference_update(writers)
        self.dropped += len(writers) // 2
        return len(writers) // 2

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        self._open.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(sink)
            with contextlib.suppress(Exception):
                sink.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # SO_LINGER 0: close() sends an RST instead of a polite FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.close()
