CREATE TYPE "public"."credit_refill_status" AS ENUM('requested', 'charging', 'succeeded', 'failed');--> statement-breakpoint
CREATE TABLE "credit_refills" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"credits" integer NOT NULL,
	"status" "credit_refill_status" DEFAULT 'requested' NOT NULL,
	"stripe_payment_intent_id" text,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "credit_refills_credits_positive" CHECK ("credit_refills"."credits" > 0)
);
--> statement-breakpoint
CREATE TABLE "stripe_events" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"team_id" text,
	"payment_intent_id" text,
	"credits_micro" bigint DEFAULT 0 NOT NULL,
	"owed_micro" bigint DEFAULT 0 NOT NULL,
	"ledger_entry_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
DROP INDEX "webhook_deliveries_endpoint_idx";--> statement-breakpoint
DROP INDEX "webhook_deliveries_pending_idx";--> statement-breakpoint
DROP INDEX "webhook_events_pending_idx";--> statement-breakpoint
ALTER TABLE "credit_balances" ADD COLUMN "refill_requested" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "credit_balances" ADD COLUMN "owed_micro" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "low_balance_percent" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "auto_refill_below" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "auto_refill_credits" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "stripe_customer_id" text;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "seq" bigint NOT NULL GENERATED ALWAYS AS IDENTITY (sequence name "webhook_deliveries_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1);--> statement-breakpoint
ALTER TABLE "webhook_events" ADD COLUMN "seq" bigint NOT NULL GENERATED ALWAYS AS IDENTITY (sequence name "webhook_events_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1);--> statement-breakpoint
ALTER TABLE "credit_refills" ADD CONSTRAINT "credit_refills_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "stripe_events" ADD CONSTRAINT "stripe_events_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "credit_refills_team_idx" ON "credit_refills" USING btree ("team_id","id");--> statement-breakpoint
CREATE INDEX "credit_refills_open_idx" ON "credit_refills" USING btree ("id") WHERE "credit_refills"."status" IN ('requested', 'charging');--> statement-breakpoint
CREATE INDEX "stripe_events_payment_intent_idx" ON "stripe_events" USING btree ("payment_intent_id");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_event_idx" ON "webhook_deliveries" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "webhook_events_team_idx" ON "webhook_events" USING btree ("team_id","seq");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_endpoint_idx" ON "webhook_deliveries" USING btree ("endpoint_id","seq");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_pending_idx" ON "webhook_deliveries" USING btree ("endpoint_id","seq") WHERE "webhook_deliveries"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "webhook_events_pending_idx" ON "webhook_events" USING btree ("seq") WHERE NOT "webhook_events"."fanned_out";--> statement-breakpoint
ALTER TABLE "teams" ADD CONSTRAINT "teams_low_balance_percent_range" CHECK ("teams"."low_balance_percent" IS NULL OR "teams"."low_balance_percent" BETWEEN 1 AND 100);--> statement-breakpoint
ALTER TABLE "teams" ADD CONSTRAINT "teams_auto_refill_complete" CHECK (("teams"."auto_refill_below" IS NULL) = ("teams"."auto_refill_credits" IS NULL));