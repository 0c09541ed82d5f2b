CREATE INDEX "jobs_team_open_idx" ON "jobs" USING btree ("team_id") WHERE "jobs"."status" IN ('pending', 'in_progress');--> statement-breakpoint
CREATE INDEX "llm_calls_team_live_idx" ON "llm_calls" USING btree ("team_id") WHERE "llm_calls"."status" = 'in_progress';--> statement-breakpoint
-- A key's count in a {"<key_id>": n} map moved by `delta`; a count back at zero leaves the map.
CREATE FUNCTION cg_bump(counts jsonb, key text, delta int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN key IS NULL OR delta = 0 THEN counts
    WHEN coalesce((counts ->> key)::int, 0) + delta <= 0 THEN counts - key
    ELSE jsonb_set(counts, ARRAY[key], to_jsonb(coalesce((counts ->> key)::int, 0) + delta))
  END
$$;
