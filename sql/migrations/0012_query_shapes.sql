-- Row shapes that several named queries read, written once (issue 16: the same join and the
-- same column list stood in three session queries, the same occupancy CTE in four analytics
-- queries). The planner inlines both: a view is flattened into the query that reads it, and
-- a LANGUAGE sql STABLE (not STRICT) set-returning function whose body is one SELECT is
-- expanded in place, so the queries plan exactly as when they were written out.

-- A charging session with its charger, site (and time zone), connector and the driver's
-- vehicle: one shape for the session detail and both lists (sql/queries/sessions.sql:
-- session, driver_sessions, admin_sessions; app.sessions.schemas.SessionRow).
CREATE VIEW session_details AS
SELECT s.session_id, s.transaction_id, s.origin, s.status, s.driver_id, s.id_tag,
       s.charger_id, c.charge_point_id, s.connector_id, s.connector_no,
       COALESCE(k.site_id, c.site_id) AS site_id, si.timezone, k.power_w AS connector_power_w,
       s.reservation_uuid, s.started_at, s.ended_at, s.meter_start_wh, s.meter_stop_wh,
       s.energy_wh, s.power_w, s.soc_percent, s.last_meter_at, s.charging_ended_at,
       s.tariff_id, s.tariff_version, s.currency, s.preauth_minor, s.holds,
       s.subtotal_minor, s.vat_minor, s.total_minor, s.receipt, s.billed_at,
       s.stop_requested_at, s.hold_exhausted_at, s.failure_reason, s.created_at,
       d.vehicle_battery_wh, d.vehicle_max_ac_w, d.vehicle_max_dc_w, k.type AS connector_type
  FROM charging_sessions s
  JOIN chargers c ON c.charger_id = s.charger_id
  JOIN sites si ON si.site_id = c.site_id
  LEFT JOIN connectors k ON k.connector_id = s.connector_id
  LEFT JOIN drivers d ON d.driver_id = s.driver_id;

-- The sessions that occupy connector time in the period [p_from, p_to), an open one until
-- p_now, none for more than 48 h, each clipped to the period as [o0, o1) (the rules at the
-- top of sql/queries/analytics.sql). FAILED attempts never occupied anything.
CREATE FUNCTION session_occupancy(p_from timestamptz, p_to timestamptz, p_now timestamptz)
RETURNS TABLE (site_id uuid, timezone text, started_at timestamptz, energy_wh bigint,
               o0 timestamptz, o1 timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ch.site_id, s.timezone, cs.started_at, cs.energy_wh,
           greatest(cs.started_at, p_from),
           least(coalesce(cs.ended_at, p_now), cs.started_at + interval '48 hours', p_to)
      FROM charging_sessions cs
      JOIN chargers ch ON ch.charger_id = cs.charger_id
      JOIN sites s ON s.site_id = ch.site_id
     WHERE cs.started_at >= p_from - interval '48 hours' AND cs.started_at < p_to
       AND least(coalesce(cs.ended_at, p_now), cs.started_at + interval '48 hours') > p_from
       AND cs.status <> 'FAILED'
$$;
