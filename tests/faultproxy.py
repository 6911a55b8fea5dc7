"""A small asyncio TCP proxy for fault tests: 127.0.0.1:<port> → a real peer (PostgreSQL,
Redis, localstripe, a Twilio stand-in), with the faults these machines allow (no
Toxiproxy, no `tc netem`, TARGETS.md):

- `stop()` — the peer is down: the listener closes (new connections are refused) and every
  open connection is reset; `start()` comes back on the same port. What a restart of the
  peer looks like from the app.
- `reset()` — every open connection is reset (RST), new ones are accepted as usual.
- `blackhole()` — a partition: open connections and new ones are accepted but nothing is
  forwarded either way (clients wait for their own timeouts); `heal()` ends it for new
  connections (the ones that lost bytes are useless and get reset).
- `delay(seconds)` — every chunk is forwarded that much later, in order; `delay(0)` ends it.

    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    url = proxy.url_for("postgresql://postgres@127.0.0.1:5432/db")   # through the proxy

    async with TcpProxy.for_url(settings.redis_url) as proxy:   # started, stopped at the end
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class TcpProxy:
    def __init__(
        self, target_host: str, target_port: int, *, port: int = 0, unix_path: str | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.unix_path = unix_path  # the peer listens on a unix socket (embedded PostgreSQL)
        self.port = port
        self.accepted = 0  # connections accepted (a reconnect storm shows here)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._blackhole = False
        self._delay_s = 0.0

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy in front of the host:port of `url` (postgresql://, redis://, http://)."""
        parts = urlsplit(url)
        default = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "http": 80}
        port = parts.port or default.get(parts.scheme, 80)
        # libpq/asyncpg's unix-socket form: postgresql://user@/db?host=/dir (the embedded
        # PostgreSQL of a fresh machine and CI); the socket is <dir>/.s.PGSQL.<port>.
        sock_dir = dict(parse_qsl(parts.query)).get("host", "")
        if sock_dir.startswith("/"):
            return cls("127.0.0.1", port, unix_path=f"{sock_dir}/.s.PGSQL.{port}")
        return cls(parts.hostname or "127.0.0.1", port)

    def url_for(self, url: str) -> str:
        """`url` with its host:port replaced by this proxy's (credentials kept)."""
        parts = urlsplit(url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def up(self) -> bool:
        return self._server is not None

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # ------------------------------------------------------------------ faults

    async def start(self) -> None:
        """Listen (again, on the same port once one was given or chosen)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """The peer is down: refuse new connections and reset the open ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.reset()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def reset(self) -> None:
        """Reset every open connection (both sides see a RST)."""
        for link in list(self._links):
            link.abort()
        self._links.clear()

    def blackhole(self) -> None:
        """Forward nothing from now on, in either direction, on old and new connections."""
        self._blackhole = True

    def heal(self) -> None:
        """End a black hole (the connections that lost bytes are reset) and any delay."""
        if self._blackhole:
            self._blackhole = False
            self.reset()
        self._delay_s = 0.0

    def delay(self, seconds: float) -> None:
        self._delay_s = max(0.0, seconds)

    # ------------------------------------------------------------------ plumbing

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self._links.add(link)
        try:
            if self._blackhole:  # accepted, then nothing: read and drop until reset
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    while await reader.read(65536):
                        pass
                return
            try:
                if self.unix_path is not None:
                    up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
                else:
                    up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                link.abort()
                return
            link.upstream = up_writer
            await asyncio.gather(
                self._pipe(reader, up_writer, link), self._pipe(up_reader, writer, link)
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError, RuntimeError):
            while data := await src.read(65536):
                if self._blackhole:
                    continue
                if self._delay_s:
                    await asyncio.sleep(self._delay_s)
                if link.dead:
                    break
                dst.write(data)
                await dst.drain()
        if not link.dead:
            with contextlib.suppress(OSError, RuntimeError):
                if dst.can_write_eof():
                    dst.write_eof()
                else:
                    dst.close()


class _Link:
    """One proxied connection: the client's side and, once connected, the peer's."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.dead = False

    def abort(self) -> None:
        """RST both sides (SO_LINGER 0, then close)."""
        self.dead = True
        for w in (self.client, self.upstream):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()

    def close(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                w.close()
