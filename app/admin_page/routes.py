"""`GET /admin/` (the page), `/admin/static/…` (its modules, styles and the vendored chart
library) and `POST /admin/v1/tariff-previews` (the editor's preview)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from litestar import Controller, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.params import JSONBody
from litestar.static_files import create_static_files_router

from app.admin_page import service
from app.admin_page.schemas import PreviewIn, PreviewOut
from app.core.auth import Permission, requires
from app.core.deps import Db
from app.core.errors import problem_doc

HERE = Path(__file__).parent
STATIC = HERE / "static"
# Everything the page needs comes from this app: no inline script or style, no other origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@functools.cache
def _index() -> bytes:
    return (HERE / "index.html").read_bytes()


@get("/admin", include_in_schema=False, name="admin_page", sync_to_thread=False)
def page() -> Response[bytes]:
    """The pricing page. It holds no data: it signs in and reads the JSON admin API."""
    return Response(
        _index(),
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def _static_headers(response: Any) -> Any:
    response.headers.update({"X-Content-Type-Options": "nosniff"})
    return response


static = create_static_files_router(
    path="/admin/static",
    directories=[STATIC],
    name="admin_static",
    include_in_schema=False,
    # revalidated on every load (ETag/Last-Modified): a deploy is seen at once
    cache_control=CacheControlHeader(no_cache=True),
    after_request=_static_headers,
)


class PreviewController(Controller):
    path = "/admin/v1/tariff-previews"
    tags = ["pricing"]

    @post(
        "/",
        summary="Preview a draft tariff: bands and a sample quote, beside the current version",
        status_code=200,
        guards=[requires(Permission.READ)],
        responses={404: problem_doc("`tariff_id` names no tariff (`tariff_not_found`)")},
    )
    async def preview(self, db: Db, data: JSONBody[PreviewIn]) -> PreviewOut:
        """Nothing is stored. The draft is checked like `PUT /admin/v1/tariffs/{id}`
        (problems in a 422 `errors`, fields under `tariff.`); bands over `[from, to)` in
        `timezone` (at most 31 days); the `sample` session is quoted with both versions."""
        return await service.preview(db, data)


ROUTES: list[Any] = [page, static, PreviewController]
