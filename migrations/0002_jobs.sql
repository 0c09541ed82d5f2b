CREATE TYPE "public"."job_status" AS ENUM('pending', 'in_progress', 'completed', 'failed', 'cancelled', 'expired');--> statement-breakpoint
CREATE TYPE "public"."llm_call_status" AS ENUM('in_progress', 'success', 'failed', 'cancelled');--> statement-breakpoint
CREATE TYPE "public"."usage_source" AS ENUM('upstream', 'estimated');--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"job_type" text NOT NULL,
	"user_id" text,
	"status" "job_status" DEFAULT 'pending' NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"hold_micro" bigint DEFAULT 0 NOT NULL,
	"charged_micro" bigint,
	"error_message" text,
	"completion" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "llm_calls" (
	"id" text PRIMARY KEY NOT NULL,
	"job_id" text NOT NULL,
	"team_id" text NOT NULL,
	"status" "llm_call_status" DEFAULT 'in_progress' NOT NULL,
	"streamed" boolean NOT NULL,
	"model_requested" text NOT NULL,
	"model_used" text,
	"request_messages" jsonb NOT NULL,
	"request_params" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"response_content" text,
	"tool_calls" jsonb,
	"finish_reason" text,
	"prompt_tokens" integer DEFAULT 0 NOT NULL,
	"completion_tokens" integer DEFAULT 0 NOT NULL,
	"total_tokens" integer DEFAULT 0 NOT NULL,
	"usage_source" "usage_source",
	"cost_usd" numeric(24, 12) DEFAULT '0' NOT NULL,
	"latency_ms" integer,
	"ttft_ms" integer,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "model_prices" (
	"model_name" text PRIMARY KEY NOT NULL,
	"input_usd_per_million" numeric(18, 6) NOT NULL,
	"output_usd_per_million" numeric(18, 6) NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "llm_calls" ADD CONSTRAINT "llm_calls_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "jobs_team_created_idx" ON "jobs" USING btree ("team_id","created_at");--> statement-breakpoint
CREATE INDEX "jobs_open_idx" ON "jobs" USING btree ("status","updated_at");--> statement-breakpoint
CREATE INDEX "llm_calls_job_idx" ON "llm_calls" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "llm_calls_team_created_idx" ON "llm_calls" USING btree ("team_id","created_at");