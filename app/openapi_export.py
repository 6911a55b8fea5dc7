"""Generate the OpenAPI document from the app, without a database."""

from __future__ import annotations

import json

from app.core.openapi import finalize_openapi
from app.core.settings import Settings
from app.main import create_app


def export() -> str:
    app = create_app(Settings(database_url="unused", redis_url="unused", jwt_secret="unused"))  # noqa: S106
    finalize_openapi(app)
    schema = app.openapi_schema.to_schema()
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
