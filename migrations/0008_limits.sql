CREATE TABLE "rate_windows" (
	"subject" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"requests" integer DEFAULT 0 NOT NULL,
	"tokens" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "rate_windows_subject_window_start_pk" PRIMARY KEY("subject","window_start")
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "requests_per_minute" integer;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "tokens_per_minute" integer;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "max_concurrent_jobs" integer;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "max_concurrent_calls" integer;--> statement-breakpoint
ALTER TABLE "credit_balances" ADD COLUMN "open_jobs" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "credit_balances" ADD COLUMN "calls_in_flight" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "credit_balances" ADD COLUMN "key_open_jobs" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "credit_balances" ADD COLUMN "key_calls_in_flight" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "key_id" text;--> statement-breakpoint
ALTER TABLE "llm_calls" ADD COLUMN "key_id" text;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "requests_per_minute" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "tokens_per_minute" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_concurrent_jobs" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_concurrent_calls" integer;--> statement-breakpoint
-- Counters start from what is open now, so an upgraded database enforces concurrency limits exactly from the first request.
UPDATE "credit_balances" b SET
  "open_jobs" = (SELECT count(*) FROM "jobs" j WHERE j.team_id = b.team_id AND j.status IN ('pending', 'in_progress')),
  "calls_in_flight" = (SELECT count(*) FROM "llm_calls" c WHERE c.team_id = b.team_id AND c.status = 'in_progress');
