ALTER TYPE "public"."usage_source" ADD VALUE 'reserved';--> statement-breakpoint
ALTER TABLE "credit_balances" ADD COLUMN "last_held_delta_micro" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "timeout_seconds" integer DEFAULT 3600 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "auto_complete" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "llm_calls" ADD COLUMN "delivered" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "llm_calls" ADD COLUMN "max_tokens" integer;--> statement-breakpoint
ALTER TABLE "llm_calls" ADD COLUMN "prompt_bound_tokens" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "llm_calls" ADD COLUMN "reserved_micro" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "llm_calls" ADD COLUMN "heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "waive_failed_jobs" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_calls_per_job" integer DEFAULT 50 NOT NULL;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_tokens_per_job" integer DEFAULT 200000 NOT NULL;--> statement-breakpoint
CREATE INDEX "llm_calls_live_idx" ON "llm_calls" USING btree ("heartbeat_at") WHERE "llm_calls"."status" = 'in_progress';--> statement-breakpoint
ALTER TABLE "teams" ADD CONSTRAINT "teams_max_calls_per_job_positive" CHECK ("teams"."max_calls_per_job" > 0);--> statement-breakpoint
ALTER TABLE "teams" ADD CONSTRAINT "teams_max_tokens_per_job_positive" CHECK ("teams"."max_tokens_per_job" > 0);