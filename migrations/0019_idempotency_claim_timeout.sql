-- How long an Idempotency-Key claim committed before its request's work may stay in progress, recorded by the
-- instance that claims it: the sweeper of an instance with a shorter JOB_TIMEOUT_SECONDS no longer frees another
-- instance's claim of a long stream (a retry would run the call twice). Claims already in progress keep null and
-- are freed when they expire.
ALTER TABLE "idempotency_keys" ADD COLUMN "timeout_seconds" integer;--> statement-breakpoint
CREATE INDEX "idempotency_keys_in_progress_idx" ON "idempotency_keys" USING btree ("created_at") WHERE "idempotency_keys"."status" = 'in_progress';
