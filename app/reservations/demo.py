"""`make run` demo: the printed tour's reservation lines (log in, hold, see it, cancel)."""

from __future__ import annotations

PY = ".venv/bin/python -c"


def tour_lines(base: str) -> list[str]:
    """Curl lines a person can paste after logging in by SMS code (`/dev/sms`)."""
    near = f"'{base}/v1/chargers/nearby?lat=52.52&lon=13.405&limit=5'"
    free = (
        f'{PY} \'import json,sys;print(next(c["connector_id"] for s in '
        'json.load(sys.stdin)["items"] for c in s["connectors"] '
        'if c["status"]=="AVAILABLE"))\''
    )
    field = f"{PY} 'import json,sys;print(json.load(sys.stdin)[sys.argv[1]])'"
    return [
        "",
        "Reservations (a hold of 15 min; the simulated charger receives ReserveNow):",
        f"  DRIVER=$(curl -s {base}/v1/auth/token -H 'content-type: application/json' "
        '-d \'{"challenge_id":"<challenge_id>","code":"<code from /dev/sms>"}\' '
        f"| {field} access_token)",
        f"  CONNECTOR=$(curl -s {near} | {free})",
        f'  RES=$(curl -s {base}/v1/reservations -H "authorization: Bearer $DRIVER" '
        "-H 'content-type: application/json' -d '{\"connector_id\":\"'$CONNECTOR'\"}' "
        f"| tee /dev/stderr | {field} reservation_id)",
        f'  curl -s {near} | grep -o "\\"connector_id\\":\\"$CONNECTOR\\"[^}}]*"   '
        "# status RESERVED",
        f'  curl -s {base}/v1/reservations -H "authorization: Bearer $DRIVER"',
        f'  curl -s -X DELETE {base}/v1/reservations/$RES -H "authorization: Bearer $DRIVER"',
        '  (or book a slot later: -d \'{"connector_id":"\'$CONNECTOR\'","start_at":"<RFC 3339, '
        "≤ 24 h ahead>\"}')",
    ]
