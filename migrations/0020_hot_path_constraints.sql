-- The sweeper's index of open jobs becomes partial: a settlement (a non-HOT update of its job) no longer writes an
-- entry into it, and it holds the open jobs instead of every job ever run. Building it reads the jobs table once.
DROP INDEX "jobs_open_idx";--> statement-breakpoint
CREATE INDEX "jobs_open_idx" ON "jobs" USING btree ("updated_at") WHERE "jobs"."status" IN ('pending', 'in_progress');--> statement-breakpoint
-- A balance row updated a second time by one transaction has its team checked again (PostgreSQL re-checks a foreign
-- key whenever the row was written by the same transaction): a group-commit batch of n jobs of one team checked it
-- 2n times. Checked at commit instead, the superseded versions are skipped and one check remains per batch; the
-- constraint holds as before (a balance row for a team that does not exist fails its transaction).
ALTER TABLE "credit_balances" ALTER CONSTRAINT "credit_balances_team_id_teams_id_fk" DEFERRABLE INITIALLY DEFERRED;
