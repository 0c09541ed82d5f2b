CREATE TYPE "public"."ledger_entry_type" AS ENUM('grant', 'adjustment', 'hold', 'release', 'charge', 'refund');--> statement-breakpoint
CREATE TYPE "public"."idempotency_status" AS ENUM('in_progress', 'completed');--> statement-breakpoint
CREATE TYPE "public"."budget_mode" AS ENUM('job_based', 'consumption_tokens', 'consumption_usd');--> statement-breakpoint
CREATE TYPE "public"."team_status" AS ENUM('active', 'suspended');--> statement-breakpoint
CREATE TABLE "admin_users" (
	"id" text PRIMARY KEY NOT NULL,
	"email" text NOT NULL,
	"password_hash" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_login_at" timestamp with time zone,
	CONSTRAINT "admin_users_email_unique" UNIQUE("email")
);
--> statement-breakpoint
CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text,
	"key_hash" text NOT NULL,
	"key_prefix" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	CONSTRAINT "api_keys_key_hash_unique" UNIQUE("key_hash")
);
--> statement-breakpoint
CREATE TABLE "credit_balances" (
	"team_id" text PRIMARY KEY NOT NULL,
	"balance_micro" bigint DEFAULT 0 NOT NULL,
	"held_micro" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "credit_balances_held_non_negative" CHECK ("credit_balances"."held_micro" >= 0),
	CONSTRAINT "credit_balances_available_non_negative" CHECK ("credit_balances"."balance_micro" - "credit_balances"."held_micro" >= 0)
);
--> statement-breakpoint
CREATE TABLE "credit_ledger" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"entry_type" "ledger_entry_type" NOT NULL,
	"amount_micro" bigint NOT NULL,
	"held_delta_micro" bigint DEFAULT 0 NOT NULL,
	"balance_after_micro" bigint NOT NULL,
	"held_after_micro" bigint NOT NULL,
	"job_id" text,
	"reason" text,
	"actor" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "credit_ledger_balance_after_non_negative" CHECK ("credit_ledger"."balance_after_micro" >= 0),
	CONSTRAINT "credit_ledger_held_after_non_negative" CHECK ("credit_ledger"."held_after_micro" >= 0)
);
--> statement-breakpoint
CREATE TABLE "idempotency_keys" (
	"scope" text NOT NULL,
	"key" text NOT NULL,
	"request_hash" text NOT NULL,
	"status" "idempotency_status" DEFAULT 'in_progress' NOT NULL,
	"response_status" integer,
	"response_body" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "idempotency_keys_scope_key_pk" PRIMARY KEY("scope","key")
);
--> statement-breakpoint
CREATE TABLE "instance_secrets" (
	"name" text PRIMARY KEY NOT NULL,
	"value" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "model_group_models" (
	"group_name" text NOT NULL,
	"model_name" text NOT NULL,
	"priority" integer NOT NULL,
	CONSTRAINT "model_group_models_group_name_model_name_pk" PRIMARY KEY("group_name","model_name")
);
--> statement-breakpoint
CREATE TABLE "model_groups" (
	"group_name" text PRIMARY KEY NOT NULL,
	"display_name" text,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "team_model_groups" (
	"team_id" text NOT NULL,
	"group_name" text NOT NULL,
	"position" integer NOT NULL,
	CONSTRAINT "team_model_groups_team_id_group_name_pk" PRIMARY KEY("team_id","group_name")
);
--> statement-breakpoint
CREATE TABLE "organizations" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "teams" (
	"id" text PRIMARY KEY NOT NULL,
	"organization_id" text NOT NULL,
	"team_alias" text,
	"status" "team_status" DEFAULT 'active' NOT NULL,
	"budget_mode" "budget_mode" DEFAULT 'job_based' NOT NULL,
	"credits_per_job" integer DEFAULT 1 NOT NULL,
	"tokens_per_credit" integer,
	"credits_per_dollar" numeric(18, 6),
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "teams_credits_per_job_positive" CHECK ("teams"."credits_per_job" > 0),
	CONSTRAINT "teams_tokens_per_credit_positive" CHECK ("teams"."tokens_per_credit" IS NULL OR "teams"."tokens_per_credit" > 0),
	CONSTRAINT "teams_credits_per_dollar_positive" CHECK ("teams"."credits_per_dollar" IS NULL OR "teams"."credits_per_dollar" > 0)
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credit_balances" ADD CONSTRAINT "credit_balances_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credit_ledger" ADD CONSTRAINT "credit_ledger_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_group_models" ADD CONSTRAINT "model_group_models_group_name_model_groups_group_name_fk" FOREIGN KEY ("group_name") REFERENCES "public"."model_groups"("group_name") ON DELETE cascade ON UPDATE cascade;--> statement-breakpoint
ALTER TABLE "team_model_groups" ADD CONSTRAINT "team_model_groups_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "team_model_groups" ADD CONSTRAINT "team_model_groups_group_name_model_groups_group_name_fk" FOREIGN KEY ("group_name") REFERENCES "public"."model_groups"("group_name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "teams" ADD CONSTRAINT "teams_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_keys_team_idx" ON "api_keys" USING btree ("team_id");--> statement-breakpoint
CREATE INDEX "credit_ledger_team_idx" ON "credit_ledger" USING btree ("team_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "credit_ledger_job_settled_once_idx" ON "credit_ledger" USING btree ("job_id") WHERE "credit_ledger"."job_id" IS NOT NULL AND "credit_ledger"."entry_type" IN ('release', 'charge');--> statement-breakpoint
CREATE INDEX "idempotency_keys_expires_idx" ON "idempotency_keys" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "team_model_groups_group_idx" ON "team_model_groups" USING btree ("group_name");--> statement-breakpoint
CREATE INDEX "teams_organization_idx" ON "teams" USING btree ("organization_id");