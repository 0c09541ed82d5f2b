-- Per-team usage summed per UTC day (dimension team_day), from the hourly team rows already rolled up; refreshes
-- keep them current from now on (src/domain/reports/usage-rollups.ts).
INSERT INTO "usage_rollups" ("dimension", "key", "bucket", "jobs", "calls", "failed_calls", "prompt_tokens", "completion_tokens", "total_tokens",
                             "cost_usd", "credits_micro", "latency_sum_ms", "latency_count", "ttft_sum_ms", "ttft_count")
SELECT 'team_day', "key", to_timestamp(floor(extract(epoch FROM "bucket") / 86400) * 86400), sum("jobs"), sum("calls"), sum("failed_calls"),
       sum("prompt_tokens"), sum("completion_tokens"), sum("total_tokens"), sum("cost_usd"), sum("credits_micro"), sum("latency_sum_ms"),
       sum("latency_count"), sum("ttft_sum_ms"), sum("ttft_count")
  FROM "usage_rollups"
 WHERE "dimension" = 'team'
 GROUP BY "key", 3
ON CONFLICT DO NOTHING;
