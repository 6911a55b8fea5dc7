"""`python -m app run` (what `make run` calls): one process tree for the whole service.

1. Embedded PostgreSQL / Valkey when `DATABASE_URL` / `REDIS_URL` are unset.
2. Generated secrets (JWT_SECRET…) persisted in `.data/secrets.json` when unset.
3. Migrations (advisory-locked; the API workers run them too, finding nothing to do).
4. Demo seed and a printed quick tour unless `APP_DEMO=0`.
5. granian with `APP_WORKERS` (2) API processes on `APP_PORT` (8000), and the arq worker.

Ctrl-C (SIGINT) or SIGTERM stops everything, in an order (:func:`_stop`): granian, the arq
worker and the demo chargers run in process groups of their own, so a terminal's Ctrl-C
reaches this process, which stops the demo chargers first, then has every API worker close
its chargers' WebSockets (SIGUSR1, `OcppHub.drain`), then stops granian, the rest and the
embedded servers. granian torn down with WebSockets still open panics ("Cannot drop
pointer into Python heap without the thread being attached", once per worker, in its
multi-threaded runtime) or never lets its workers exit (single-threaded runtime): granian
issues #799/#884; tests/run/test_stop.py, bench/README.md ("Clean stop").
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.core.embedded import Services
from app.core.settings import ROOT

_services: Services | None = None


def data_dir() -> Path:
    return Path(os.environ.get("APP_DATA_DIR", str(ROOT / ".data")))


def _secrets() -> dict[str, str]:
    path = data_dir() / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for name in ("JWT_SECRET",):
        if name not in stored:
            stored[name] = secrets.token_urlsafe(48)
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored))
        path.chmod(0o600)
    return stored


def resolve_environment(*, start_services: bool = True) -> dict[str, str]:
    """The environment the service runs with: given variables win, the rest is provided.
    With `start_services=False` only PostgreSQL is provided (for CLI commands)."""
    global _services
    env: dict[str, str] = {}
    for name, value in _secrets().items():
        env[name] = os.environ.get(name) or value
    if _services is None:
        _services = Services(data_dir())
        # (CLI commands only need PostgreSQL; Redis is started for `run`.)
        env.update(_services.start(redis=start_services))
        atexit.register(_services.stop)
    else:
        env.update(_services.env)
    for name in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def _print_tour(port: int, creds: dict[str, object] | None) -> None:
    base = f"http://127.0.0.1:{port}"
    lines = [
        "",
        "Voltway is running.",
        f"  API docs        {base}/schema   (Swagger: {base}/schema/swagger)",
        f"  pricing page    {base}/admin/   (staff sign-in: email, password, TOTP code)",
        f"  health          curl -s {base}/health/ready",
        f"  metrics         curl -s {base}/metrics | head",
    ]
    if creds:
        lines += [
            "",
            "Demo staff admin (TOTP secret for any authenticator app):",
            f"  email           {creds['email']}",
            f"  password        {creds['password']}",
            f"  TOTP secret     {creds['totp_secret']}",
            f"  otpauth URI     {creds['otpauth_uri']}",
            f"  pricing page    {base}/admin/ with this email and password and the code"
            " your authenticator shows for the secret (or the CODE line below)",
            "",
            "Try next:",
            "  CODE=$(.venv/bin/python -c \"import pyotp;print(pyotp.TOTP('"
            + str(creds["totp_secret"])
            + "').now())\")",
            f"  TOKEN=$(curl -s {base}/admin/v1/auth/login -H 'content-type: application/json' "
            f'-d \'{{"email":"{creds["email"]}","password":"{creds["password"]}",'
            "\"totp_code\":\"'$CODE'\"}' | .venv/bin/python -c 'import json,sys;"
            'print(json.load(sys.stdin)["access_token"])\')',
            f"  curl -s '{base}/admin/v1/fleet/sites?limit=2' -H \"authorization: Bearer $TOKEN\"",
            f"  curl -s '{base}/admin/v1/fleet/chargers?connectivity=offline&limit=3' "
            '-H "authorization: Bearer $TOKEN"',
            f"  curl -s '{base}/admin/v1/audit-log?limit=5' -H \"authorization: Bearer $TOKEN\"",
            "",
            "Drivers (the demo SMS sink prints the code; also GET /dev/sms):",
            f"  curl -s '{base}/v1/chargers/nearby?lat=52.52&lon=13.405&limit=3'",
            f"  curl -s {base}/v1/auth/otp -H 'content-type: application/json' "
            '-d \'{"phone":"+4915112345678"}\'',
            f"  curl -s {base}/v1/auth/token -H 'content-type: application/json' "
            '-d \'{"challenge_id":"<challenge_id>","code":"<code>"}\'',
        ]
    lines.append("\nCtrl-C stops everything.\n")
    print("\n".join(lines), flush=True)


def run() -> int:
    env = resolve_environment()
    demo = os.environ.get("APP_DEMO", "1").strip().lower() not in {"0", "false", "no", "off"}
    port = int(os.environ.get("APP_PORT", "8000"))
    workers = int(os.environ.get("APP_WORKERS", "2"))
    child_env = {**os.environ, **env, "APP_DEMO": "1" if demo else "0"}
    # granian and arq import `app` / `workers` by name from the checkout.
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    prom_dir = data_dir() / "prometheus"
    shutil.rmtree(prom_dir, ignore_errors=True)
    prom_dir.mkdir(parents=True, exist_ok=True)
    child_env["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)

    from app.core.migrations import migrate

    applied = asyncio.run(migrate(env["DATABASE_URL"]))
    if applied:
        print(f"migrations applied: {', '.join(applied)}", flush=True)
    creds = None
    if demo:
        from app.demo.seed import seed

        creds = asyncio.run(seed(env["DATABASE_URL"], data_dir()))

    platform = None
    if demo and not os.environ.get("CONTROL_CENTER_API_BASE"):
        # The demo fleet's connectivity platform (sets CONTROL_CENTER_* for the children).
        from app.connectivity.demo import start_platform

        platform = start_platform(env["DATABASE_URL"], data_dir(), port, child_env)

    stripe_server = None
    if demo and not os.environ.get("STRIPE_SECRET_KEY"):
        # A local localstripe (sets STRIPE_* for the children, registers our webhook).
        from app.payments.localstripe import start_localstripe

        stripe_server = start_localstripe(data_dir(), port, child_env)

    venv_bin = Path(sys.executable).parent
    # Inherited by the children: SIGUSR1 does nothing in granian's main process, the arq
    # worker or the simulator; the API workers' own handler drains their sockets.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    api = subprocess.Popen(  # noqa: S603 - our own entry points
        [
            str(venv_bin / "granian"),
            "--interface",
            "asgi",
            "--factory",
            "--host",
            os.environ.get("APP_HOST", "127.0.0.1"),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop" if _has_uvloop() else "asyncio",
            "--no-access-log",
            # A worker that dies (OOM, kill -9) is replaced; without this granian exits
            # with it and takes the whole service down (tests/faults/test_api_worker_kill.py).
            "--respawn-failed-workers",
            # A worker that has not stopped 10 s after SIGTERM is killed (our own stop below
            # waits 15 s for the whole group); tests/servers.py starts granian the same way.
            "--workers-kill-timeout",
            "10",
            "app.main:create_app",
        ],
        env=child_env,
        process_group=0,
    )
    arq = subprocess.Popen(  # noqa: S603
        [str(venv_bin / "arq"), "workers.main.WorkerSettings"], env=child_env, process_group=0
    )
    procs: list[subprocess.Popen[bytes]] = [api, arq]
    chargers: subprocess.Popen[bytes] | None = None

    if platform is not None:
        procs.append(platform)
    if stripe_server is not None:
        procs.append(stripe_server)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    ready = _wait_ready(port, procs)
    if ready:
        if demo and os.environ.get("DEMO_SIMULATOR", "1") != "0":
            chargers = _start_demo_chargers(env["DATABASE_URL"], port, child_env)
            procs.append(chargers)
        _print_tour(port, creds)
        if platform is not None:
            from app.connectivity.demo import tour_lines

            print("\n".join(tour_lines(f"http://127.0.0.1:{port}", data_dir())), flush=True)
        if stripe_server is not None:
            from app.payments.localstripe import tour_lines as payment_lines

            print("\n".join(payment_lines(f"http://127.0.0.1:{port}")), flush=True)
        if demo:
            from app.reservations.demo import tour_lines as reservation_lines

            print("\n".join(reservation_lines(f"http://127.0.0.1:{port}")), flush=True)
            from app.sessions.demo import tour_lines as session_lines

            print("\n".join(session_lines(f"http://127.0.0.1:{port}")), flush=True)
    while ready and not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    crashed = not stopping  # not ready, or a child ended on its own
    _stop(api=api, chargers=chargers, others=[p for p in procs if p not in (api, chargers)])
    if _services:
        _services.stop()
    print("stopped.", flush=True)
    if crashed:
        print("a process ended on its own or the API never got ready: see above", file=sys.stderr)
        return 1
    return 0


DRAIN_S = 1.5  # after SIGUSR1: the workers close their sockets concurrently (ms for 10k)


def _stop(
    *,
    api: subprocess.Popen[bytes],
    chargers: subprocess.Popen[bytes] | None,
    others: list[subprocess.Popen[bytes]],
) -> None:
    """Stop the children so that granian stops without open WebSockets: the demo chargers
    first (they close their own connections), then every API worker closes what is left
    (real chargers) and refuses new ones, then granian itself and the rest."""
    if chargers is not None:
        _terminate([chargers], timeout_s=10)
    if api.poll() is None:
        _signal(api, signal.SIGUSR1)
        time.sleep(DRAIN_S)
    _terminate([api, *others], timeout_s=15)


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    """To the child's whole process group when it leads one (granian and its workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)


def _terminate(procs: list[subprocess.Popen[bytes]], *, timeout_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"process {p.pid} did not stop within {timeout_s:.0f} s: killed", file=sys.stderr)
            _signal(p, signal.SIGKILL)
            p.wait()


def _start_demo_chargers(
    database_url: str, port: int, child_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Every demo charger connects over OCPP from a simulator process (app/sim)."""
    from app.chargers.demo import simulator_command, write_demo_chargers

    path = data_dir() / "demo-chargers.json"
    count = write_demo_chargers(database_url, path)
    print(f"demo: {count} simulated chargers connecting over OCPP", flush=True)
    return subprocess.Popen(  # noqa: S603 - our own entry point
        simulator_command(sys.executable, port, path), env=child_env, process_group=0
    )


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _wait_ready(port: int, procs: list[subprocess.Popen[bytes]]) -> bool:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False
