-- cg_bump again, with the new count turned into jsonb through text (immutable) instead of to_jsonb (stable): a SQL
-- function whose body is less immutable than it is declared is not inlined, and every call of the old one parsed
-- and planned its body anew (four times per billed job, inside the hold and the settlement).
CREATE OR REPLACE FUNCTION cg_bump(counts jsonb, key text, delta int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN key IS NULL OR delta = 0 THEN counts
    WHEN coalesce((counts ->> key)::int, 0) + delta <= 0 THEN counts - key
    ELSE jsonb_set(counts, ARRAY[key], (coalesce((counts ->> key)::int, 0) + delta)::text::jsonb)
  END
$$;
