"""Connectivity tests run with a push secret configured."""

from __future__ import annotations

import msgspec
import pytest

from app.core.settings import Settings

PUSH_SECRET = "test-push-secret-0123456789"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, control_center_push_secret=PUSH_SECRET)
