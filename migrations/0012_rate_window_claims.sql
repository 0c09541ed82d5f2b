-- Claims part of a subject's budget for one minute: grants what is asked, or what is left of the limit if that is
-- less, never more. The window row is locked while it is read and written, so claims from every instance add up
-- exactly. A null limit is no limit.
CREATE FUNCTION cg_claim_rate(
  claim_subject text, claim_window timestamptz, want_requests int, want_tokens bigint, limit_requests int, limit_tokens bigint,
  OUT granted_requests int, OUT granted_tokens bigint, OUT used_requests int, OUT used_tokens bigint
) LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO rate_windows (subject, window_start) VALUES (claim_subject, claim_window) ON CONFLICT DO NOTHING;
  SELECT requests, tokens INTO used_requests, used_tokens FROM rate_windows
   WHERE subject = claim_subject AND window_start = claim_window FOR UPDATE;
  granted_requests := CASE WHEN limit_requests IS NULL THEN want_requests ELSE LEAST(want_requests, GREATEST(limit_requests - used_requests, 0)) END;
  granted_tokens := CASE WHEN limit_tokens IS NULL THEN want_tokens ELSE LEAST(want_tokens, GREATEST(limit_tokens - used_tokens, 0)) END;
  used_requests := used_requests + granted_requests;
  used_tokens := used_tokens + granted_tokens;
  UPDATE rate_windows SET requests = used_requests, tokens = used_tokens
   WHERE subject = claim_subject AND window_start = claim_window;
END;
$$;
