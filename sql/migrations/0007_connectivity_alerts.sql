-- Connectivity health, one decider (app.connectivity.service.settle): the link signals it
-- needs beside ocpp_links, and operator alerts (INTEGRATIONS.md §1-2).

-- When the current outage began (NULL while not offline); connections opened in the
-- current flapping window.
ALTER TABLE charger_connectivity
    ADD COLUMN offline_since         timestamptz,
    ADD COLUMN flap_window_start     timestamptz,
    ADD COLUMN flap_count            integer NOT NULL DEFAULT 0;
UPDATE charger_connectivity SET offline_since = changed_at
 WHERE state = 'offline' AND reason <> 'never_connected';

-- Operator alerts: quarantine, offline longer than OFFLINE_ALERT_AFTER_S (once per outage),
-- degraded (roaming, data-usage threshold) and flapping. `dedupe_key` makes raising
-- idempotent (a re-run sweep, a resent event). The SMS issue delivers them
-- (`delivered_at`); operators acknowledge them.
CREATE TABLE operator_alerts (
    alert_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charger_id       uuid NOT NULL REFERENCES chargers (charger_id) ON DELETE CASCADE,
    kind             text NOT NULL
                     CHECK (kind IN ('quarantine', 'offline', 'degraded', 'flapping')),
    reason           text NOT NULL DEFAULT '',
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key       text NOT NULL UNIQUE,
    raised_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    delivered_at     timestamptz
);
CREATE INDEX operator_alerts_open ON operator_alerts (alert_id) WHERE acknowledged_at IS NULL;
CREATE INDEX operator_alerts_charger ON operator_alerts (charger_id, raised_at DESC);

-- Alerts raised before this migration (0005's table) move over.
INSERT INTO operator_alerts (charger_id, kind, reason, dedupe_key, raised_at, acknowledged_at)
SELECT charger_id, kind, reason, 'legacy:' || id, created_at,
       CASE WHEN acknowledged THEN created_at END
  FROM connectivity_alerts;
DROP TABLE connectivity_alerts;
