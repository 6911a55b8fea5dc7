"""Fleet onboarding (bulk, idempotent, per-site errors) and fleet listings."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
import uuid
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

import msgspec

from app.core import audit
from app.core.auth import StaffPrincipal
from app.core.db import Connection
from app.core.errors import FieldError, ValidationFailed
from app.core.pagination import CursorText, decode_cursor, encode_cursor
from app.fleet import queries
from app.fleet.schemas import (
    ChargerHealthPage,
    ChargerOut,
    Counts,
    FailedSite,
    FleetImportLoose,
    ImportResult,
    RowFieldError,
    SiteIn,
    SiteOut,
    SitePage,
)

_AT = re.compile(r" - at `\$\.?(.*)`$")


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def hash_ocpp_password(charge_point_id: str, password: str) -> str:
    """OCPP Basic-auth passwords are machine secrets of 16–40 characters, checked on every
    charger (re)connect and imported 10,000 at a time, so they are stored like API keys:
    SHA-256 salted with the charger's identity (argon2 is kept for human passwords, whose
    low entropy needs a slow hash; at ~50 ms each it would make an import take minutes)."""
    digest = hashlib.sha256(f"{charge_point_id}\0{password}".encode()).hexdigest()
    return f"sha256${digest}"


def verify_ocpp_password(charge_point_id: str, password: str, stored: str) -> bool:
    return hmac.compare_digest(hash_ocpp_password(charge_point_id, password), stored)


def parse_csv(text: str) -> list[dict[str, Any]]:
    """One CSV row per connector: external_id,name,address,lat,lon,timezone,charge_point_id,
    ocpp_password,iccid,connector_no,type,power_kw. Rows are grouped into sites and chargers
    in order of first appearance; values are left as text for per-site validation."""
    reader = csv.DictReader(io.StringIO(text))
    required = {"external_id", "name", "lat", "lon", "timezone"}
    missing = required - set(reader.fieldnames or [])
    if missing:
        raise ValidationFailed(
            "the CSV header lacks required columns",
            errors=[FieldError(field=m, message="missing CSV column") for m in sorted(missing)],
        )
    sites: dict[str, dict[str, Any]] = {}
    for row in reader:
        ext = (row.get("external_id") or "").strip()
        site = sites.get(ext)
        if site is None:
            site = sites[ext] = {
                "external_id": ext,
                "name": row.get("name") or "",
                "address": row.get("address") or "",
                "lat": _num(row.get("lat")),
                "lon": _num(row.get("lon")),
                "timezone": row.get("timezone") or "",
                "chargers": {},
            }
        cpid = (row.get("charge_point_id") or "").strip()
        if not cpid:
            continue
        charger = site["chargers"].get(cpid)
        if charger is None:
            charger = site["chargers"][cpid] = {
                "charge_point_id": cpid,
                "ocpp_password": row.get("ocpp_password") or "",
                "connectors": [],
            }
            if row.get("iccid"):
                charger["iccid"] = row["iccid"].strip()
        if row.get("connector_no"):
            charger["connectors"].append(
                {
                    "connector_no": _num(row.get("connector_no")),
                    "type": (row.get("type") or "").strip(),
                    "power_kw": _num(row.get("power_kw")),
                }
            )
    out = []
    for site in sites.values():
        site["chargers"] = list(site["chargers"].values())
        out.append(site)
    return out


def _num(value: str | None) -> Any:
    if value is None:
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # left for validation to report


def decode_json_sites(body: bytes) -> list[Any]:
    """The envelope must be valid; each site inside is validated on its own later."""
    try:
        return list(msgspec.json.decode(body, type=FleetImportLoose).sites)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(
            str(exc), errors=[FieldError(field=_field(str(exc)) or "sites", message=str(exc))]
        ) from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed(
            "the body is not valid JSON", errors=[FieldError(field="body", message=str(exc))]
        ) from None


def _field(message: str) -> str:
    m = _AT.search(message)
    return m.group(1) if m else ""


def _validate_site(raw: Any, index: int) -> tuple[SiteIn | None, FailedSite | None]:
    external_id: str | None = None
    try:
        obj = msgspec.json.decode(raw) if isinstance(raw, msgspec.Raw) else raw
        if isinstance(obj, dict) and isinstance(obj.get("external_id"), str):
            external_id = obj["external_id"]
        site = msgspec.convert(obj, SiteIn)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        msg = str(exc)
        field = _field(msg) or "site"
        message = _AT.sub("", msg)
        return None, FailedSite(
            index=index, external_id=external_id, errors=[RowFieldError(field, message)]
        )
    errors: list[RowFieldError] = []
    if site.timezone not in _timezones():
        errors.append(RowFieldError("timezone", "not an IANA time zone name"))
    seen_no: set[int]
    for ci, charger in enumerate(site.chargers):
        seen_no = set()
        for ki, connector in enumerate(charger.connectors):
            if connector.connector_no in seen_no:
                errors.append(
                    RowFieldError(
                        f"chargers[{ci}].connectors[{ki}].connector_no",
                        "duplicate connector_no on this charger",
                    )
                )
            seen_no.add(connector.connector_no)
    if errors:
        return None, FailedSite(index=index, external_id=site.external_id, errors=errors)
    return site, None


async def import_fleet(
    conn: Connection,
    raw_sites: list[Any],
    *,
    actor: StaffPrincipal,
    request_id: str | None,
) -> ImportResult:
    """Validate each site on its own, then upsert every good one in a few set-based
    statements. A site with any bad field (or a bad charger) is reported and skipped."""
    failed: list[FailedSite] = []
    good: list[tuple[int, SiteIn]] = []
    seen_ext: dict[str, int] = {}
    seen_cpid: dict[str, int] = {}
    seen_iccid: dict[str, int] = {}
    for index, raw in enumerate(raw_sites):
        site, failure = _validate_site(raw, index)
        if failure is not None:
            failed.append(failure)
            continue
        assert site is not None
        errors: list[RowFieldError] = []
        if site.external_id in seen_ext:
            errors.append(RowFieldError("external_id", "appears twice in this import"))
        for ci, charger in enumerate(site.chargers):
            if charger.charge_point_id in seen_cpid:
                errors.append(
                    RowFieldError(f"chargers[{ci}].charge_point_id", "appears twice in this import")
                )
            if charger.iccid and charger.iccid in seen_iccid:
                errors.append(
                    RowFieldError(f"chargers[{ci}].iccid", "appears twice in this import")
                )
        if errors:
            failed.append(FailedSite(index=index, external_id=site.external_id, errors=errors))
            continue
        seen_ext[site.external_id] = index
        for charger in site.chargers:
            seen_cpid[charger.charge_point_id] = index
            if charger.iccid:
                seen_iccid[charger.iccid] = index
        good.append((index, site))

    # A SIM already registered to a charger outside this import cannot be claimed again.
    if seen_iccid:
        clashes = await queries.chargers_by_iccid(conn, iccids=list(seen_iccid))
        bad_index: dict[int, list[RowFieldError]] = {}
        for holder in clashes:
            idx = seen_iccid[holder.iccid]
            site = next(s for i, s in good if i == idx)
            owner = next(c for c in site.chargers if c.iccid == holder.iccid)
            if holder.charge_point_id != owner.charge_point_id:
                bad_index.setdefault(idx, []).append(
                    RowFieldError("iccid", f"ICCID {holder.iccid} belongs to another charger")
                )
        if bad_index:
            for idx, errs in bad_index.items():
                site = next(s for i, s in good if i == idx)
                failed.append(FailedSite(index=idx, external_id=site.external_id, errors=errs))
            good = [(i, s) for i, s in good if i not in bad_index]
    failed.sort(key=lambda f: f.index)

    created, updated = Counts(), Counts()
    sites = [s for _, s in good]
    if sites:
        done = await queries.upsert_sites(
            conn,
            external_ids=[s.external_id for s in sites],
            names=[s.name for s in sites],
            addresses=[s.address for s in sites],
            lats=[s.lat for s in sites],
            lons=[s.lon for s in sites],
            timezones=[s.timezone for s in sites],
        )
        created.sites, updated.sites = done.inserted, done.updated
        site_ids = await queries.site_ids_by_external_id(
            conn, external_ids=[s.external_id for s in sites]
        )
        chargers = [(site_ids[s.external_id], c) for s in sites for c in s.chargers]
        if chargers:
            done = await queries.upsert_chargers(
                conn,
                charge_point_ids=[c.charge_point_id for _, c in chargers],
                site_ids=[sid for sid, _ in chargers],
                password_hashes=[
                    hash_ocpp_password(c.charge_point_id, c.ocpp_password) for _, c in chargers
                ],
                iccids=[c.iccid for _, c in chargers],
            )
            created.chargers, updated.chargers = done.inserted, done.updated
            charger_ids = await queries.charger_ids_by_cpid(
                conn, charge_point_ids=[c.charge_point_id for _, c in chargers]
            )
            connectors = [
                (charger_ids[c.charge_point_id], sid, k)
                for sid, c in chargers
                for k in c.connectors
            ]
            done = await queries.upsert_connectors(
                conn,
                charger_ids=[cid for cid, _, _ in connectors],
                site_ids=[sid for _, sid, _ in connectors],
                connector_nos=[k.connector_no for _, _, k in connectors],
                types=[k.type.value for _, _, k in connectors],
                powers_w=[round(k.power_kw * 1000) for _, _, k in connectors],
            )
            created.connectors, updated.connectors = done.inserted, done.updated

    result = ImportResult(created=created, updated=updated, failed=failed)
    await audit.record(
        conn,
        actor=actor,
        action="fleet.import",
        entity_type="fleet",
        entity_id=None,
        after={
            "created": msgspec.to_builtins(created),
            "updated": msgspec.to_builtins(updated),
            "failed": len(failed),
            "sites_in_request": len(raw_sites),
        },
        request_id=request_id,
    )
    return result


async def list_sites(
    conn: Connection, *, external_id: str | None, limit: int, cursor: str | None
) -> SitePage:
    after = decode_cursor(cursor, tuple[CursorText])
    rows = await queries.list_sites(
        conn, external_id=external_id, after=after[0] if after else None, limit=limit + 1
    )
    page = rows[:limit]
    by_site: dict[str, list[ChargerOut]] = {r.site_id: [] for r in page}
    if page:
        site_ids = [uuid.UUID(s) for s in by_site]
        for c in await queries.chargers_of_sites(conn, site_ids=site_ids):
            by_site[str(c.site_id)].append(
                ChargerOut(
                    charger_id=c.charger_id,
                    charge_point_id=c.charge_point_id,
                    iccid=c.iccid,
                    connectors=c.connectors,
                )
            )
    items = [SiteOut(**msgspec.structs.asdict(r), chargers=by_site[r.site_id]) for r in page]
    next_cursor = encode_cursor((page[-1].external_id,)) if len(rows) > limit else None
    return SitePage(items=items, next_cursor=next_cursor)


async def list_charger_health(
    conn: Connection, *, connectivity: str | None, limit: int, cursor: str | None
) -> ChargerHealthPage:
    after = decode_cursor(cursor, tuple[CursorText])
    rows = await queries.list_charger_health(
        conn, connectivity=connectivity, after=after[0] if after else None, limit=limit + 1
    )
    items = rows[:limit]
    next_cursor = encode_cursor((items[-1].charge_point_id,)) if len(rows) > limit else None
    return ChargerHealthPage(items=items, next_cursor=next_cursor)
