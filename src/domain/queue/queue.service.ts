import { and, count, eq, inArray, sql } from 'drizzle-orm';
import type { LlmCallRequest, QueueItem, QueueSubmitRequest, QueueSubmitResponse } from '../../contracts/index.js';
import { withTransaction, type DbOrTx, type Transaction } from '../../db/client.js';
import { llmCalls, queueRequests } from '../../db/schema/index.js';
import { AppError, conflict, notFound } from '../../lib/errors.js';
import { newId } from '../../lib/ids.js';
import { sseComment, sseEvent } from '../../sse/encode.js';
import { errorFrameBody, queueFormat } from '../../sse/formats.js';
import { UpstreamError } from '../../upstream/errors.js';
import type { StreamSink } from '../../sse/sink.js';
import { recordCall, reserveCall } from '../billing/settlement.js';
import { type ServiceContext } from '../context.js';
import { actorLabel, teamOf } from '../actor.js';
import { JOB_STATUS_OF_CALL } from '../jobs/create-and-call.service.js';
import { findJob, isOpen } from '../jobs/jobs.repository.js';
import { createJob, settle } from '../jobs/jobs.service.js';
import { callUsageOf } from '../llm/call-record.js';
import { prepareCall, relayStream, type CallStatus } from '../llm/call-relay.js';
import { replayCallFrames } from '../llm/call-replay.js';
import { resolveModelRoute } from '../llm/model-routing.js';
import { endStream } from '../llm/stream-end.js';
import { loadTeamSnapshot } from '../tenancy/team-snapshot.js';
import type { QueueBroadcast } from './queue-broadcast.js';

type QueueRow = typeof queueRequests.$inferSelect;

const OPEN = ['queued', 'processing'] as const;
const QUEUE_STATUS_OF_CALL: Record<CallStatus, QueueRow['status']> = { success: 'completed', failed: 'error', cancelled: 'cancelled' };
const POLL_MS = 200;

/**
 * Accepts a call to run server-side now; the answer names it at once, before the model is even contacted. It runs
 * as soon as one of the instance's QUEUE_MAX_RUNNING slots is free.
 */
export async function submitQueued(ctx: ServiceContext, input: QueueSubmitRequest): Promise<QueueSubmitResponse> {
  const teamId = teamOf(ctx.actor);
  const maxOpen = ctx.config.QUEUE_MAX_OPEN_PER_TEAM;
  const { job_id: givenJobId, provider: _provider, stream: _stream, ...request } = input;
  // Read before the transaction: inside it, a wait for another pool connection could wait on this one.
  const snapshot = await loadTeamSnapshot(ctx.db, ctx.caches.teams, teamId);
  resolveModelRoute(snapshot, input.model);
  // A full queue is refused before any work; the count under the lock below is the one that decides.
  if ((await countOpenItems(ctx.db, teamId)) >= maxOpen) throw queueFull(maxOpen);
  // The job's hold and the item commit together: a refused item leaves no credits held.
  const item = await withTransaction(ctx.db, async (tx) => {
    let jobId = givenJobId;
    if (jobId) {
      const job = await findJob(tx, jobId, teamId);
      if (!job) throw notFound('job', 'job_id');
      if (!isOpen(job)) throw conflict(`job ${jobId} is ${job.status}; create a new job`, 'job_not_open');
    } else {
      jobId = (await createJob({ ...ctx, db: tx }, { team_id: teamId, job_type: 'queue' }, { autoComplete: true, team: snapshot.team })).job_id;
    }
    await lockTeamQueue(tx, teamId);
    if ((await countOpenItems(tx, teamId)) >= maxOpen) throw queueFull(maxOpen);
    const [row] = await tx
      .insert(queueRequests)
      .values({ id: newId('q'), teamId, jobId, ownsJob: !givenJobId, model: input.model, request })
      .returning();
    return row!;
  });
  const broadcast = ctx.queue.start(item.id);
  const unregister = ctx.inflight.register([item.id], broadcast.controller);
  runQueued(ctx, item, broadcast)
    .catch((error: unknown) => ctx.log.error({ err: error, queue_id: item.id }, 'queued call failed'))
    .finally(() => {
      unregister();
      ctx.queue.finished(item.id);
    });
  return { data: { queueId: item.id, status: 'queued' } };
}

/**
 * Serialises the count and the new item of one team's queue across instances, so together they never let more than
 * QUEUE_MAX_OPEN_PER_TEAM in. Taken as the transaction's last step, it is held for the count, the insert and the
 * commit only, never across a wait for anything but the database.
 */
async function lockTeamQueue(tx: Transaction, teamId: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${`queue:${teamId}`}))`);
}

async function countOpenItems(db: DbOrTx, teamId: string): Promise<number> {
  const [open] = await db
    .select({ n: count() })
    .from(queueRequests)
    .where(and(eq(queueRequests.teamId, teamId), inArray(queueRequests.status, [...OPEN])));
  return open?.n ?? 0;
}

function queueFull(maxOpen: number): AppError {
  return new AppError('rate_limited', `this team already has ${maxOpen} queued calls waiting or running (QUEUE_MAX_OPEN_PER_TEAM); retry when one ends`, {
    reason: 'queue_full',
    retryAfterSeconds: 1,
  });
}

/** Runs a queued call: reserve on its job → relay into the broadcast → record → end its own job, if it has one. */
async function runQueued(ctx: ServiceContext, item: QueueRow, broadcast: QueueBroadcast): Promise<void> {
  const endJob = async (status: CallStatus, error?: string) => {
    if (item.ownsJob) await settle(ctx, item.jobId, JOB_STATUS_OF_CALL[status], { errorMessage: error });
  };
  const setStatus = (status: QueueRow['status'], extra: Partial<QueueRow> = {}) =>
    ctx.db
      .update(queueRequests)
      .set({ status, ...extra, ...(status !== 'processing' && { finishedAt: sql`now()` }) })
      .where(and(eq(queueRequests.id, item.id), inArray(queueRequests.status, [...OPEN])))
      .returning();
  const releaseSlot = await ctx.queue.runSlot(ctx.config.QUEUE_MAX_RUNNING, broadcast.signal);
  try {
    if (!releaseSlot || (await setStatus('processing', { startedAt: new Date() })).length === 0 || broadcast.signal.aborted) {
      // Cancelled, or aborted by a shutdown, before it started: nothing was delivered.
      const reason = broadcast.signal.reason instanceof UpstreamError ? broadcast.signal.reason : UpstreamError.aborted('cancelled', 'cancelled before it started');
      await endJob('cancelled', reason.message);
      await setStatus('cancelled', { error: reason.message });
      await endStream(broadcast, queueFormat, { error: reason, recorded: true });
      return;
    }
    const snapshot = await loadTeamSnapshot(ctx.db, ctx.caches.teams, item.teamId);
    const request = { ...item.request, model: item.model } as LlmCallRequest;
    const call = prepareCall(item.jobId, item.teamId, resolveModelRoute(snapshot, item.model), request, true);
    const admission = await reserveCall(ctx, snapshot.team, call, actorLabel(ctx.actor));
    await ctx.db.update(queueRequests).set({ callId: call.handle.callId }).where(eq(queueRequests.id, item.id));
    const outcome = await relayStream(ctx, call.handle, broadcast, { format: queueFormat });
    const { recorded } = await recordCall(ctx, snapshot.team, call.handle, admission, await callUsageOf(call.handle, outcome), actorLabel(ctx.actor));
    if (recorded) await endJob(outcome.status, outcome.error?.message);
    await setStatus(QUEUE_STATUS_OF_CALL[outcome.status], { error: outcome.error?.message ?? null });
    await endStream(broadcast, queueFormat, { error: outcome.error, recorded });
  } catch (error) {
    const message = error instanceof Error ? error.message : 'failed';
    const code = error instanceof AppError ? error.reason : 'upstream_error';
    // The job is settled before the item is marked ended: an ended item means its money is settled.
    await endJob('failed', message).catch(() => undefined);
    await setStatus('error', { error: message });
    await endStream(broadcast, queueFormat, { error: new UpstreamError(message, 'connection', undefined, undefined, code), recorded: true });
  } finally {
    releaseSlot?.();
    broadcast.end();
  }
}

async function requireItem(ctx: ServiceContext, queueId: string): Promise<QueueRow> {
  const [item] = await ctx.db
    .select()
    .from(queueRequests)
    .where(and(eq(queueRequests.id, queueId), eq(queueRequests.teamId, teamOf(ctx.actor))));
  if (!item) throw notFound('queue item', 'queueId');
  return item;
}

export async function getQueued(ctx: ServiceContext, queueId: string): Promise<QueueItem> {
  const item = await requireItem(ctx, queueId);
  const [call] = item.callId ? await ctx.db.select().from(llmCalls).where(eq(llmCalls.id, item.callId)) : [];
  return {
    queueId: item.id,
    status: item.status,
    model: item.model,
    jobId: item.jobId,
    callId: item.callId,
    error: item.error,
    createdAt: item.createdAt.toISOString(),
    startedAt: item.startedAt?.toISOString() ?? null,
    finishedAt: item.finishedAt?.toISOString() ?? null,
    result: call
      ? {
          content: call.responseContent,
          finishReason: call.finishReason,
          toolCalls: (call.toolCalls as unknown[] | null) ?? null,
          totalTokens: call.totalTokens,
        }
      : null,
  };
}

/** Marks the item cancelled and aborts its upstream request wherever it runs (NOTIFY reaches other instances). */
export async function cancelQueued(ctx: ServiceContext, queueId: string): Promise<QueueSubmitResponse> {
  const item = await requireItem(ctx, queueId);
  const cancelled = await ctx.db
    .update(queueRequests)
    .set({ status: 'cancelled', finishedAt: sql`now()`, error: 'cancelled' })
    .where(and(eq(queueRequests.id, item.id), inArray(queueRequests.status, [...OPEN])))
    .returning();
  if (cancelled.length > 0) await ctx.inflight.cancel(item.id);
  return { data: { queueId: item.id, status: cancelled.length > 0 ? 'cancelled' : item.status } };
}

/**
 * Streams a queued call: `start`, then every chunk from the beginning (a late reader gets a replay), then live
 * ones, then `done`. A call running on another instance is followed through the database and replayed from its
 * record when it ends. Leaving does not stop the call.
 */
export async function streamQueued(ctx: ServiceContext, queueId: string, sink: StreamSink): Promise<void> {
  const item = await requireItem(ctx, queueId);
  sink.open();
  try {
    await sink.write(sseEvent('start', { queueId: item.id }));
    const local = ctx.queue.replayable(item.id);
    if (local) {
      await relay(local, sink, ctx.config.STREAM_KEEPALIVE_MS, ctx.config.QUEUE_ITEM_BUFFER_BYTES);
      return;
    }
    const ended = await waitUntilEnded(ctx, item.id, sink);
    if (!ended) return;
    const frames = ended.callId
      ? (await replayCallFrames(ctx.db, ended.callId, queueFormat)).frames
      : [queueFormat.error(errorFrameBody(ended.status, ended.error ?? ended.status)), queueFormat.done()];
    for (const frame of frames) await sink.write(frame);
  } finally {
    sink.end();
  }
}

/**
 * Hands a local call's frames to one reader. A reader that falls `maxPendingBytes` behind (it reads slower than
 * the call writes) is ended with an error event; it may attach again and get the call replayed.
 */
async function relay(broadcast: QueueBroadcast, sink: StreamSink, keepaliveMs: number, maxPendingBytes: number): Promise<void> {
  const pending: (string | null)[] = [];
  let pendingBytes = 0;
  let behind = false;
  let wake: (() => void) | undefined;
  const unsubscribe = broadcast.subscribe((frame) => {
    if (behind) return;
    if (frame !== null && pendingBytes + frame.length * 2 > maxPendingBytes) {
      behind = true;
      pending.length = 0;
      pendingBytes = 0;
      pending.push(queueFormat.error(errorFrameBody('slow_reader', 'this reader fell too far behind the call; attach again to get it replayed')), null);
    } else {
      pending.push(frame);
      if (frame !== null) pendingBytes += frame.length * 2;
    }
    wake?.();
  });
  const stopWatching = sink.onAbort(() => wake?.());
  try {
    for (;;) {
      if (pending.length === 0) {
        const woken = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), keepaliveMs);
          wake = () => {
            clearTimeout(timer);
            resolve(true);
          };
        });
        wake = undefined;
        if (!woken && !sink.closed) await sink.write(sseComment('keepalive'));
      }
      if (sink.closed) return;
      const frame = pending.shift();
      if (frame === null) return;
      if (frame !== undefined) {
        if (!behind) pendingBytes -= frame.length * 2;
        await sink.write(frame);
      }
    }
  } finally {
    unsubscribe();
    stopWatching();
  }
}

async function callInProgress(ctx: ServiceContext, callId: string | null): Promise<boolean> {
  if (!callId) return false;
  const [call] = await ctx.db.select({ status: llmCalls.status }).from(llmCalls).where(eq(llmCalls.id, callId));
  return call?.status === 'in_progress';
}

async function waitUntilEnded(ctx: ServiceContext, queueId: string, sink: StreamSink): Promise<QueueRow | undefined> {
  let quietSince = Date.now();
  while (!sink.closed) {
    const item = await requireItem(ctx, queueId);
    // A cancel marks the item at once; its call is recorded a moment later by the instance that ran it.
    if (!(OPEN as readonly string[]).includes(item.status) && !(await callInProgress(ctx, item.callId))) return item;
    if (Date.now() - quietSince >= ctx.config.STREAM_KEEPALIVE_MS) {
      await sink.write(sseComment('keepalive'));
      quietSince = Date.now();
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return undefined;
}
