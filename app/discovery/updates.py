"""Live updates of the index in place: a connector's status, a charger's visibility.

live.py applies them from PostgreSQL NOTIFY; they write into the arrays the search (and
the C kernel's struct) read, so the next response shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.discovery.columns import STATUS_CODE, VISIBLE_STATES, find

if TYPE_CHECKING:
    from app.discovery.index import FleetIndex


def set_connector_status(ix: FleetIndex, connector_seq: int, status: str) -> bool:
    i = find(ix.conn_seq_sorted, ix.conn_seq_pos, connector_seq)
    code = STATUS_CODE.get(status)
    if i is None or code is None:
        return False
    ix.conn_status[i] = code
    return True


def set_charger_state(ix: FleetIndex, charger_seq: int, state: str) -> bool:
    i = find(ix.charger_seq_sorted, ix.charger_seq_pos, charger_seq)
    if i is None:
        return False
    ix.charger_visible[i] = 1 if state in VISIBLE_STATES else 0
    return True
