"""A private `localstripe` server (PyPI: a fake but stateful Stripe) for the demo and tests.

Used only when `STRIPE_SECRET_KEY` is unset (RUNNING.md), like the embedded PostgreSQL and
Valkey of `app/core/embedded.py`: `python -m app run` starts one on a free port and hands
the children `STRIPE_SECRET_KEY=sk_test_…` and `STRIPE_API_BASE=http://127.0.0.1:<port>`,
then registers our webhook endpoint with `POST /_config/webhooks/voltway`.

`python -m app.payments.localstripe --port N` runs the server on 127.0.0.1 only and without
localstripe's habit of pickling its whole store to `/tmp/localstripe.pickle` after every
write (slow as the store grows, and shared by every instance on the machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.core.embedded import free_port, terminate
from app.core.settings import ROOT

log = logging.getLogger("app.payments.localstripe")

DEMO_SECRET_KEY = "sk_test_voltway_localstripe"  # noqa: S105 - a fake server's key
WEBHOOK_ID = "voltway"
WEBHOOK_EVENTS = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    "charge.refunded",
    "charge.dispute.created",
    "setup_intent.succeeded",
)


class LocalStripe:
    """One localstripe process on 127.0.0.1; `start()` returns the Stripe variables."""

    def __init__(self, log_path: Path | None = None, *, port: int = 0) -> None:
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> dict[str, str]:
        self.port = self.port or free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        out = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")  # type: ignore[assignment]
        self.proc = subprocess.Popen(  # noqa: S603 - our own entry point
            [sys.executable, "-m", "app.payments.localstripe", "--port", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ROOT),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return {"STRIPE_SECRET_KEY": DEMO_SECRET_KEY, "STRIPE_API_BASE": self.api_base}
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"localstripe did not start (log: {self.log_path})")

    def register_webhook(
        self, url: str, secret: str, events: tuple[str, ...] | None = WEBHOOK_EVENTS
    ) -> None:
        """Have localstripe sign and POST its events to `url` (it emits only
        `payment_intent.succeeded` / `payment_intent.payment_failed`)."""
        register_webhook(self.api_base, url, secret, events)

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


def register_webhook(
    api_base: str,
    url: str,
    secret: str,
    events: tuple[str, ...] | None = WEBHOOK_EVENTS,
    *,
    webhook_id: str = WEBHOOK_ID,
) -> None:
    body: dict[str, object] = {"url": url, "secret": secret}
    if events is not None:
        body["events"] = list(events)
    request = urllib.request.Request(  # noqa: S310 - our own local server
        f"{api_base.rstrip('/')}/_config/webhooks/{webhook_id}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        if answer.status >= 300:
            raise RuntimeError(f"localstripe refused the webhook: {answer.status}")


_demo_api_base = ""


def start_localstripe(
    data_dir: Path, port: int, child_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`make run` in demo mode without STRIPE_SECRET_KEY: start localstripe, hand the
    children its variables (and a webhook secret), and have it send its events to our
    `POST /webhooks/stripe`. The returned process is stopped with the others."""
    global _demo_api_base
    server = LocalStripe(data_dir / "localstripe.log")
    child_env.update(server.start())
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET") or "whsec_" + secrets.token_hex(24)
    child_env["STRIPE_WEBHOOK_SECRET"] = secret
    server.register_webhook(f"http://127.0.0.1:{port}/webhooks/stripe", secret)
    _demo_api_base = server.api_base
    print(f"demo: localstripe (a fake Stripe) at {server.api_base}", flush=True)
    assert server.proc is not None
    return server.proc


def tour_lines(base: str) -> list[str]:
    """What to try with payments in the demo (printed by `make run`)."""
    auth = '-H "authorization: Bearer $DRIVER_TOKEN"'
    json_type = "-H 'content-type: application/json'"
    lines = [
        "",
        "Payments (localstripe; DRIVER_TOKEN = access_token from /v1/auth/token):",
        f"  curl -s -X POST {base}/dev/drivers/me/test-card {auth} {json_type} "
        '-d \'{"card":"visa"}\'      # or declined_charge (4000000000000341)',
        f"  curl -s {base}/v1/me/payment-methods {auth}",
    ]
    if _demo_api_base:
        lines.append(
            f"  curl -s '{_demo_api_base}/v1/payment_intents?limit=5' -u {DEMO_SECRET_KEY}:"
            "   # the holds and captures, as Stripe sees them"
        )
    return lines


def serve(port: int) -> None:
    """Run localstripe's aiohttp app in this process (blocking)."""
    from aiohttp import web
    from localstripe import resources, server  # type: ignore[import-untyped]

    # Keep the store in memory only (see the module docstring).
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    logging.basicConfig(level=logging.INFO, format="localstripe %(message)s")
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args(argv)
    serve(args.port)


if __name__ == "__main__":
    main()
