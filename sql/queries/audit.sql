-- name: insert
-- Append one entry to the audit log.
INSERT INTO audit_log (actor_type, actor_id, actor_email, action, entity_type, entity_id,
                       before, after, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING audit_id, at;
