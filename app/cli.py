"""Command line: run the whole service, migrate, create staff users, write OpenAPI."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.core.auth import Role


def _cmd_create_user(args: argparse.Namespace) -> int:
    import asyncpg

    from app.admin.service import create_or_update_staff, otpauth_uri
    from app.core import audit
    from app.core.db import init_connection
    from app.core.migrations import migrate
    from app.run import resolve_environment

    env = resolve_environment(start_services=False)

    async def go() -> tuple[str, str, bool]:
        await migrate(env["DATABASE_URL"])
        conn = await asyncpg.connect(env["DATABASE_URL"])
        await init_connection(conn)
        try:
            async with conn.transaction():
                staff_id, secret, created = await create_or_update_staff(
                    conn,
                    email=args.email,
                    password=args.password,
                    roles=[Role(r) for r in args.role],
                    totp_secret=args.totp_secret,
                )
                await audit.record(
                    conn,
                    actor=None,
                    actor_type="cli",
                    action="staff.create" if created else "staff.reset",
                    entity_type="staff_user",
                    entity_id=staff_id,
                    after={"email": args.email, "roles": args.role},
                )
                return staff_id, secret, created
        finally:
            await conn.close()

    try:
        staff_id, secret, created = asyncio.run(go())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'created' if created else 'updated'} staff user {args.email} ({staff_id})")
    print(otpauth_uri(args.email, secret))
    return 0


def _cmd_migrate(_: argparse.Namespace) -> int:
    from app.core.migrations import migrate
    from app.run import resolve_environment

    env = resolve_environment(start_services=False)
    applied = asyncio.run(migrate(env["DATABASE_URL"]))
    print("applied: " + (", ".join(applied) or "nothing (up to date)"))
    return 0


def _cmd_openapi(args: argparse.Namespace) -> int:
    from app.openapi_export import export

    text = export()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


def _cmd_run(_: argparse.Namespace) -> int:
    from app.run import run

    return run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Voltway backend")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="API (2 workers) + arq worker (+ demo); Ctrl-C stops all")
    sub.add_parser("migrate", help="apply pending SQL migrations")
    p = sub.add_parser("openapi", help="write the OpenAPI document")
    p.add_argument("--output", default="openapi/openapi.json")

    admin = sub.add_parser("admin", help="staff administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    cu = admin_sub.add_parser("create-user", help="create (or reset) a staff user")
    cu.add_argument("--email", required=True)
    cu.add_argument("--password", required=True)
    cu.add_argument(
        "--role",
        required=True,
        action="append",
        choices=[r.value for r in Role],
        help="repeat for several roles",
    )
    cu.add_argument("--totp-secret", default=None, help="BASE32; generated when omitted")

    args = parser.parse_args(argv)
    if args.command == "admin" and args.admin_command == "create-user":
        if len(args.password) < 10:
            print("error: the password must have at least 10 characters", file=sys.stderr)
            return 2
        return _cmd_create_user(args)
    handlers = {"run": _cmd_run, "migrate": _cmd_migrate, "openapi": _cmd_openapi}
    return handlers[args.command](args)
