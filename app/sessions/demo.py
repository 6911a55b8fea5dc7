"""`make run` demo: the printed tour's charging lines (card, start, progress, stop,
receipt), continuing the reservation lines' `$DRIVER` and `$CONNECTOR`."""

from __future__ import annotations

PY = ".venv/bin/python -c"


def tour_lines(base: str) -> list[str]:
    """Curl lines for the whole charging journey after logging in by SMS code."""
    driver = '-H "authorization: Bearer $DRIVER"'
    json_type = "-H 'content-type: application/json'"
    field = (
        f"{PY} 'import json,sys;v=json.load(sys.stdin)[sys.argv[1]];"
        "print(v if isinstance(v,str) else json.dumps(v))'"
    )
    show = (
        f'{PY} \'import json,sys;s=json.load(sys.stdin);print(s["status"],s["energy_kwh"],'
        '"kWh",s["power_kw"],"kW",s["soc_percent"],"%",s["cost_so_far_minor"],s["currency"],'
        '"~",s["estimated_minutes_remaining"],"min left",s["payment"]["status"])\''
    )
    return [
        "",
        "Charging (a hold on the card, RemoteStart, live progress, stop, receipt, capture;"
        " $DRIVER and $CONNECTOR as above — a reservation you hold there is used):",
        f"  curl -s -X POST {base}/dev/drivers/me/test-card {driver} {json_type} "
        '-d \'{"card":"visa"}\'',
        f"  SESSION=$(curl -s {base}/v1/sessions {driver} {json_type} "
        "-d '{\"connector_id\":\"'$CONNECTOR'\"}' "
        f"| tee /dev/stderr | {field} session_id)",
        f"  for i in 1 2 3 4 5 6; do curl -s {base}/v1/sessions/$SESSION {driver} | {show}; "
        "sleep 5; done",
        f"  curl -s -X POST {base}/v1/sessions/$SESSION/stop {driver}",
        f"  sleep 3; curl -s {base}/v1/sessions/$SESSION {driver} | {field} receipt",
        f"  sleep 5; curl -s {base}/v1/sessions/$SESSION {driver} | {field} payment"
        "   # captured_minor = the receipt's total_minor once the worker captured",
        f"  curl -s {base}/v1/sessions {driver}   # the driver's history, newest first",
    ]
