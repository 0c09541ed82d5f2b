CREATE TYPE "public"."queue_status" AS ENUM('queued', 'processing', 'completed', 'error', 'cancelled');--> statement-breakpoint
CREATE TABLE "queue_requests" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"job_id" text NOT NULL,
	"owns_job" boolean NOT NULL,
	"status" "queue_status" DEFAULT 'queued' NOT NULL,
	"model" text NOT NULL,
	"request" jsonb NOT NULL,
	"call_id" text,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "queue_requests" ADD CONSTRAINT "queue_requests_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "queue_requests_open_idx" ON "queue_requests" USING btree ("status","created_at");