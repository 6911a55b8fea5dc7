"""`python -m app.connectivity push --charger DEMO-DE-0000-1 --event IMEI_CHANGE`

Sends one push event to the service as the platform would: JSON, signed with
`signature2 = base64(HMAC-SHA256(secret, timestamp))`. The secret is
`CONTROL_CENTER_PUSH_SECRET`, else the demo platform's (`.data/demo-platform.json`, written by
`make run`); `--charger` looks the ICCID up among the demo SIMs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.connectivity.push import compute_signature

EVENTS = (
    "IMEI_CHANGE",
    "SIM_STATE_CHANGE",
    "SESSION_STOP",
    "SESSION_START",
    "CTD_SESSION_USAGE_EXCEEDED",
    "PAST24H_DATA_USAGE_EXCEEDED",
)


def _data_dir() -> Path:
    from app.run import data_dir

    return data_dir()


def platform_timestamp(now: datetime) -> str:
    """The platform's own date style: `2016-06-29 00:29:04.271+0000`."""
    now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def build(
    event: str, iccid: str, secret: str, fields: dict[str, str], now: datetime
) -> dict[str, object]:
    timestamp = platform_timestamp(now)
    return {
        "eventId": f"cli-{uuid.uuid4().hex}",
        "eventType": event,
        "timestamp": timestamp,
        "signature2": compute_signature(secret.encode(), timestamp),
        "data": {"iccid": iccid, **fields},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.connectivity")
    sub = parser.add_subparsers(dest="command", required=True)
    push = sub.add_parser("push", help="send one signed push event")
    who = push.add_mutually_exclusive_group(required=True)
    who.add_argument("--iccid")
    who.add_argument("--charger", help="a demo charge point id (its SIM from make run)")
    push.add_argument("--event", required=True, help=f"one of {', '.join(EVENTS)}, or any")
    push.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
    push.add_argument("--url", default="")
    push.add_argument("--secret", default="", help="default: the environment or the demo's")
    args = parser.parse_args(argv)

    stored_path = _data_dir() / "demo-platform.json"
    stored = json.loads(stored_path.read_text()) if stored_path.exists() else {}
    secret = (
        args.secret or os.environ.get("CONTROL_CENTER_PUSH_SECRET") or stored.get("push_secret")
    )
    if not secret:
        print("no push secret: set CONTROL_CENTER_PUSH_SECRET or run `make run`", file=sys.stderr)
        return 2
    iccid = args.iccid
    if args.charger:
        sims_path = _data_dir() / "demo-sims.json"
        sims = json.loads(sims_path.read_text()) if sims_path.exists() else []
        iccid = next((s["iccid"] for s in sims if s["charge_point_id"] == args.charger), None)
        if iccid is None:
            print(f"{args.charger} is not a demo charger with a SIM", file=sys.stderr)
            return 2
    fields = dict(f.split("=", 1) for f in args.field if "=" in f)
    if args.event == "IMEI_CHANGE":
        fields.setdefault("newImei", "353627119999999")
    elif args.event == "SIM_STATE_CHANGE":
        fields.setdefault("currentState", "DEACTIVATED")
    port = stored.get("api_port") or os.environ.get("APP_PORT", "8000")
    url = args.url or f"http://127.0.0.1:{port}/webhooks/control-center"
    body = build(args.event, iccid, secret, fields, datetime.now(UTC))
    try:
        r = httpx.post(url, json=body, timeout=10.0)
    except httpx.HTTPError as exc:
        print(f"{url}: {exc!r}", file=sys.stderr)
        return 1
    print(f"{args.event} for {iccid} → HTTP {r.status_code} {r.text}")
    return 0 if r.status_code == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
