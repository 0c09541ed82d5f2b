ALTER TABLE "credit_balances" ADD COLUMN "last_amount_micro" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "available_after_micro" bigint;