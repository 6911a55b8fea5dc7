-- Reservations (issue 11): a hold of a connector from now, or a slot later today.
--
-- Invariants live here, not in the application:
--   * no double booking: an exclusion constraint over (connector, time range) for the live
--     statuses — two PENDING/CONFIRMED/ACTIVE reservations of one connector never overlap,
--     however many API processes insert at once (PENDING: a hold whose charger has not
--     answered ReserveNow yet; it becomes CONFIRMED or is deleted, and the API never shows
--     it);
--   * one driver, one place at a time: the same constraint over (driver, time range), and a
--     partial unique index (one reservation holding a connector now per driver);
--   * advisory locks (class 30322 driver, 30323 connector, 30324 charger guard; taken in
--     that order) serialise the checks with the inserts they guard, so the constraints
--     refuse rather than deadlock;
--   * search shows a connector RESERVED exactly while a reservation holds it (trigger on
--     connectors.status: the charger's Available/Reserved never contradicts us, its
--     Occupied/Faulted/Unavailable always wins);
--   * a charger going offline or quarantined with live reservations writes an outbox job
--     (move to a twin connector or cancel) in the same transaction as the state change,
--     and NOTIFYs `vw_reservations` so a worker runs it at once.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- OCPP 1.6 reservationId (ReserveNow, CancelReservation, StartTransaction): an integer we
-- issue, one sequence for the whole fleet.
CREATE SEQUENCE ocpp_reservation_ids AS integer START 1;

CREATE TABLE reservations (
    reservation_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ocpp_reservation_id  integer NOT NULL UNIQUE DEFAULT nextval('ocpp_reservation_ids'),
    driver_id            uuid NOT NULL REFERENCES drivers (driver_id) ON DELETE CASCADE,
    connector_id         uuid NOT NULL REFERENCES connectors (connector_id) ON DELETE CASCADE,
    -- denormalised from the connector: moves and the charger's messages look them up
    charger_id           uuid NOT NULL REFERENCES chargers (charger_id) ON DELETE CASCADE,
    site_id              uuid NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
    connector_no         integer NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('hold', 'slot')),
    status               text NOT NULL DEFAULT 'CONFIRMED' CHECK (status IN (
                             'PENDING', 'CONFIRMED', 'ACTIVE', 'FULFILLED', 'CANCELLED',
                             'EXPIRED', 'MOVED')),
    start_at             timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    -- holds the connector from here: a hold at once, a slot when it begins
    began_at             timestamptz,
    -- the charger accepted ReserveNow / was told the reservation is over (or needs not be)
    charger_reserved_at  timestamptz,
    charger_released_at  timestamptz,
    moved_from           uuid REFERENCES reservations (reservation_id) ON DELETE SET NULL,
    moved_to             uuid REFERENCES reservations (reservation_id) ON DELETE SET NULL,
    cancel_reason        text CHECK (cancel_reason ~ '^[a-z][a-z_]{0,39}$'),
    -- the charging session (OCPP transactionId) that used it
    transaction_id       integer,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    ended_at             timestamptz,
    CHECK (expires_at > start_at),
    CHECK (moved_to IS NULL OR status = 'MOVED'),
    CONSTRAINT reservations_no_double_booking EXCLUDE USING gist (
        connector_id WITH =, tstzrange(start_at, expires_at, '[)') WITH &&
    ) WHERE (status IN ('PENDING', 'CONFIRMED', 'ACTIVE')),
    CONSTRAINT reservations_driver_one_at_a_time EXCLUDE USING gist (
        driver_id WITH =, tstzrange(start_at, expires_at, '[)') WITH &&
    ) WHERE (status IN ('PENDING', 'CONFIRMED', 'ACTIVE'))
);
-- At most one reservation per driver holds a connector now (a hold, a slot that has
-- begun, or one being charged on), whatever the time ranges say.
CREATE UNIQUE INDEX reservations_one_live_hold ON reservations (driver_id)
    WHERE status IN ('PENDING', 'ACTIVE') OR (status = 'CONFIRMED' AND began_at IS NOT NULL);
CREATE INDEX reservations_driver_recent ON reservations (driver_id, created_at DESC, reservation_id DESC);
CREATE INDEX reservations_charger_live ON reservations (charger_id)
    WHERE status IN ('CONFIRMED', 'ACTIVE');
CREATE INDEX reservations_connector_holding ON reservations (connector_id)
    WHERE status = 'CONFIRMED' AND began_at IS NOT NULL;
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'CONFIRMED';
CREATE INDEX reservations_pending ON reservations (created_at) WHERE status = 'PENDING';
CREATE INDEX reservations_unreleased ON reservations (charger_id)
    WHERE charger_reserved_at IS NOT NULL AND charger_released_at IS NULL;

-- Whether a reservation holds this connector at `p_at` (what RESERVED in search means).
CREATE FUNCTION reservation_holds(p_connector uuid, p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM reservations
                    WHERE connector_id = p_connector AND status = 'CONFIRMED'
                      AND began_at IS NOT NULL AND expires_at > p_at)
$$;

-- Who wins between the charger's StatusNotification and our reservations: between
-- AVAILABLE and RESERVED we decide (a charger that forgot a reservation, or a late
-- `Reserved` after a cancel, must not show the connector wrongly); OCCUPIED, FAULTED and
-- UNAVAILABLE are the charger's facts and always pass.
CREATE FUNCTION reservations_connector_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'AVAILABLE' AND reservation_holds(NEW.connector_id, now()) THEN
        NEW.status := 'RESERVED';
    ELSIF NEW.status = 'RESERVED' AND NOT reservation_holds(NEW.connector_id, now()) THEN
        NEW.status := 'AVAILABLE';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER connectors_reservation_status BEFORE UPDATE OF status ON connectors
    FOR EACH ROW WHEN (NEW.status IN ('AVAILABLE', 'RESERVED'))
    EXECUTE FUNCTION reservations_connector_status();

-- A hold from now, checked and inserted PENDING in one statement (the hot path: one round
-- trip instead of a transaction of four). The driver's advisory lock is taken first and
-- held to the end of this statement's transaction; each later statement of the function
-- reads with a fresh snapshot, so it sees what a concurrent request of the same driver
-- committed. The verdict names the first rule that refuses ('ok' = inserted); the
-- exclusion constraints still refuse whatever a concurrent request slipped in.
CREATE FUNCTION reservation_begin_hold(
    p_driver uuid, p_connector uuid, p_charger uuid, p_site uuid, p_connector_no integer,
    p_start timestamptz, p_end timestamptz, p_now timestamptz,
    OUT verdict text, OUT reservation_id uuid, OUT ocpp_reservation_id integer
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(30322, hashtext(p_driver::text));
    -- The connector's lock too (see reservation_confirm_hold): no conflicting row is ever
    -- inserted while another transaction re-checks the constraint for this connector.
    PERFORM pg_advisory_xact_lock(30323, hashtext(p_connector::text));
    IF EXISTS (SELECT 1 FROM reservations r
                WHERE r.driver_id = p_driver
                  AND (r.status IN ('PENDING', 'ACTIVE')
                       OR (r.status = 'CONFIRMED' AND r.began_at IS NOT NULL
                           AND r.expires_at > p_now))) THEN
        verdict := 'driver_holding';
    ELSIF EXISTS (SELECT 1 FROM reservations r
                   WHERE r.driver_id = p_driver AND r.status IN ('PENDING', 'CONFIRMED', 'ACTIVE')
                     AND tstzrange(r.start_at, r.expires_at, '[)')
                         && tstzrange(p_start, p_end, '[)')) THEN
        verdict := 'driver_overlap';
    ELSIF EXISTS (SELECT 1 FROM reservations r
                   WHERE r.connector_id = p_connector AND r.status IN ('CONFIRMED', 'ACTIVE')
                     AND tstzrange(r.start_at, r.expires_at, '[)')
                         && tstzrange(p_start, p_end, '[)')) THEN
        verdict := 'connector_overlap';
    ELSIF EXISTS (SELECT 1 FROM reservations r
                   WHERE r.connector_id = p_connector AND r.status = 'PENDING'
                     AND tstzrange(r.start_at, r.expires_at, '[)')
                         && tstzrange(p_start, p_end, '[)')) THEN
        verdict := 'connector_pending';
    ELSE
        INSERT INTO reservations AS r (driver_id, connector_id, charger_id, site_id,
                                       connector_no, kind, status, start_at, expires_at,
                                       began_at, created_at, updated_at)
        VALUES (p_driver, p_connector, p_charger, p_site, p_connector_no, 'hold', 'PENDING',
                p_start, p_end, p_now, p_now, p_now)
        RETURNING r.reservation_id, r.ocpp_reservation_id INTO reservation_id, ocpp_reservation_id;
        verdict := 'ok';
    END IF;
END $$;

-- A hold's charger accepted ReserveNow: confirm it in one statement, in autocommit. The
-- guard (see reservations_charger_hidden) is taken first; each statement of a plpgsql
-- function reads with a fresh snapshot, so the state read after the lock sees what a
-- settle() we waited for committed. A hidden charger deletes the PENDING hold instead
-- (no row returned); a confirmed hold shows RESERVED in search at once.
CREATE FUNCTION reservation_confirm_hold(p_reservation uuid, p_charger uuid, p_at timestamptz)
RETURNS SETOF reservations LANGUAGE plpgsql AS $$
DECLARE
    v_row reservations;
    v_connector uuid;
BEGIN
    -- PENDING → CONFIRMED is a new index entry, which the exclusion constraints check
    -- again; a conflicting row inserted at that moment by another transaction (whose
    -- checks ran before this hold existed) would make the two wait for each other. Every
    -- insert of a reservation takes its connector's lock first, and so does this.
    SELECT connector_id INTO v_connector FROM reservations WHERE reservation_id = p_reservation;
    IF v_connector IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(30323, hashtext(v_connector::text));
    END IF;
    PERFORM pg_advisory_xact_lock_shared(30324, hashtext(p_charger::text));
    IF (SELECT state FROM charger_connectivity WHERE charger_id = p_charger)
       NOT IN ('online', 'degraded') THEN
        DELETE FROM reservations WHERE reservation_id = p_reservation AND status = 'PENDING';
        RETURN;
    END IF;
    UPDATE reservations SET status = 'CONFIRMED', charger_reserved_at = p_at, updated_at = p_at
     WHERE reservation_id = p_reservation AND status = 'PENDING'
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE connectors SET status = 'RESERVED', status_at = p_at, updated_at = now()
     WHERE connector_id = v_row.connector_id AND status = 'AVAILABLE';
    RETURN NEXT v_row;
END $$;

-- The driver cancels, in one statement: CANCELLED, the connector free in search at once,
-- and (when the charger holds it) the outbox row of CancelReservation — due in 30 s, as
-- the API sends it itself right after the commit and marks the row done
-- (`reservations.release_done`); the relay only acts when that did not happen. Returns
-- the reservation (unchanged when it was not CONFIRMED; nothing for another driver's).
CREATE FUNCTION reservation_cancel(p_reservation uuid, p_driver uuid, p_at timestamptz)
RETURNS SETOF reservations LANGUAGE plpgsql AS $$
DECLARE
    v_row reservations;
BEGIN
    SELECT * INTO v_row FROM reservations
     WHERE reservation_id = p_reservation AND driver_id = p_driver AND status <> 'PENDING'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_row.status = 'CONFIRMED' THEN
        UPDATE reservations
           SET status = 'CANCELLED', cancel_reason = 'driver', ended_at = p_at, updated_at = p_at,
               charger_released_at = CASE WHEN charger_reserved_at IS NULL THEN p_at END
         WHERE reservation_id = p_reservation
        RETURNING * INTO v_row;
        -- (the connectors trigger keeps it RESERVED if another reservation holds it)
        UPDATE connectors SET status = 'AVAILABLE', status_at = p_at, updated_at = now()
         WHERE connector_id = v_row.connector_id AND status = 'RESERVED';
        IF v_row.charger_released_at IS NULL THEN
            INSERT INTO outbox (job, args, dedupe_key, available_at)
            VALUES ('release_reservation',
                    jsonb_build_object('reservation_id', v_row.reservation_id),
                    'reservations:release:' || v_row.reservation_id,
                    p_at + interval '30 seconds')
            ON CONFLICT (dedupe_key) DO NOTHING;
        END IF;
    END IF;
    RETURN NEXT v_row;
END $$;

-- A charger hidden from search (offline or quarantined, decided by connectivity's
-- settle()) with live reservations: the move job is written in the same transaction and
-- announced at once (a worker LISTENs on vw_reservations; the outbox relay is the net).
CREATE FUNCTION reservations_charger_hidden() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_outbox bigint;
BEGIN
    -- A hold being confirmed on this charger right now takes this lock shared (after the
    -- charger accepted, before it reads the state and commits): wait for it, so that its
    -- row is seen below; one that comes later waits for this commit and sees `offline`.
    -- (An advisory lock, not a row lock on charger_connectivity: the OCPP writers update
    -- those rows all the time and must not queue behind a request.)
    PERFORM pg_advisory_xact_lock(30324, hashtext(NEW.charger_id::text));
    IF EXISTS (SELECT 1 FROM reservations
                WHERE charger_id = NEW.charger_id AND status = 'CONFIRMED') THEN
        INSERT INTO outbox (job, args, dedupe_key)
        VALUES ('move_reservations', jsonb_build_object('charger_id', NEW.charger_id),
                'reservations:move:' || NEW.charger_id || ':' || txid_current())
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING outbox_id INTO v_outbox;
        IF v_outbox IS NOT NULL THEN
            PERFORM pg_notify('vw_reservations', v_outbox::text);
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER charger_connectivity_reservations AFTER UPDATE OF state ON charger_connectivity
    FOR EACH ROW
    WHEN (NEW.state IN ('offline', 'quarantined') AND OLD.state NOT IN ('offline', 'quarantined'))
    EXECUTE FUNCTION reservations_charger_hidden();

-- A charger (re)connected: chargers keep reservations across reboots, some badly, so what
-- should still hold is sent again and what should not is cancelled (INTEGRATIONS.md §1).
CREATE FUNCTION reservations_charger_connected() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_outbox bigint;
BEGIN
    -- (two probes, each on a partial index: this runs on every reconnect of every charger)
    IF EXISTS (SELECT 1 FROM reservations
                WHERE charger_id = NEW.charger_id AND status = 'CONFIRMED'
                  AND charger_reserved_at IS NOT NULL)
       OR EXISTS (SELECT 1 FROM reservations
                   WHERE charger_id = NEW.charger_id AND charger_reserved_at IS NOT NULL
                     AND charger_released_at IS NULL
                     AND expires_at > now() - interval '1 day') THEN
        INSERT INTO outbox (job, args, dedupe_key, available_at)
        VALUES ('resync_charger_reservations', jsonb_build_object('charger_id', NEW.charger_id),
                'reservations:resync:' || NEW.charger_id || ':' || txid_current(),
                now() + interval '2 seconds')
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING outbox_id INTO v_outbox;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ocpp_links_reservations AFTER INSERT OR UPDATE OF connected_at ON ocpp_links
    FOR EACH ROW WHEN (NEW.disconnected_at IS NULL)
    EXECUTE FUNCTION reservations_charger_connected();
