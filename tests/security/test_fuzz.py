"""The bounded schemathesis run of `make test`: every operation of the committed
`openapi/openapi.json`, against the app in granian, with driver and staff tokens. `make
fuzz` (bench/fuzz.py) runs the same harness for ≥ 5,000 requests."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from tests.security.fuzzing import run_schemathesis, seed_service, service_peers
from tests.servers import granian_app

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))


@pytest.mark.timeout(600)
async def test_every_operation_answers_as_documented(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = {"REDIS_NAMESPACE": f"fz{uuid.uuid4().hex[:8]}", "DRIVER_ACCESS_TTL_S": "21600"}
    with service_peers(tmp_path) as peers:
        async with granian_app(db_url, redis_url, workers=1, env={**env, **peers}) as base:
            creds = await seed_service(db_url, base)
            run = await asyncio.to_thread(
                run_schemathesis,
                base,
                creds,
                tmp_path,
                max_examples=MAX_EXAMPLES,
                seed=SEED,
                timeout_s=540,
            )
    tail = "\n".join(run.output.splitlines()[-150:])
    assert run.exit_code == 0, f"{run.summary()}\n{tail}"
    assert run.report.get("operations", {}).get("errored") == 0, tail
    assert run.requests >= 500, run.summary()
