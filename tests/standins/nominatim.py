"""A Nominatim `/search` stand-in (what geopy's Nominatim geocoder calls), in its own
thread: the app under test may run its own event loop, so the stand-in must not share
the test's. `places` maps a lower-case query to its (lat, lon) as Nominatim's strings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@contextmanager
def nominatim(places: dict[str, tuple[str, str]], seen: list[str] | None = None) -> Iterator[str]:
    """Serve `places` until the block ends; yields the base URL. Every `q=` asked is
    appended to `seen`; an unknown place answers `[]`, as Nominatim does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            q = parse_qs(url.query).get("q", [""])[0]
            if seen is not None:
                seen.append(q)
            hit = places.get(q.strip().lower()) if url.path == "/search" else None
            body: list[dict[str, Any]] = []
            if hit is not None:
                body = [
                    {
                        "lat": hit[0],
                        "lon": hit[1],
                        "display_name": q,
                        "place_id": 1,
                        "importance": 0.9,
                    }
                ]
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
