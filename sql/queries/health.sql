-- name: ping
-- PostgreSQL answers (readiness).
SELECT 1;
