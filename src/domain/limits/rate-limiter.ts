import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { AppError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';

const WINDOW_MS = 60_000;
/**
 * Each claim takes this share of a minute's limit (at least what the call needs): few claims, little stranded. Below
 * SMALL_LIMIT a claim takes just what the call needs, so an instance never strands a share of a small limit (those
 * teams call rarely, so the claim's round trip per call is cheap).
 */
const CHUNK_SHARE = 0.1;
const SMALL_LIMIT = 20;
/** Claim rounds a caller waits through before it is refused (see admit). */
const MAX_CLAIM_ROUNDS = 50;
/** A background claim starts when the local allowance falls below this share of a chunk. */
const REFILL_BELOW = 0.5;

/** A team's or a key's per-minute limits (null: none), under the name its windows are kept by. */
export interface RateSubject {
  name: string;
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
}

interface Allowance {
  window: number;
  /** Claimed from the shared window and not spent yet, on this instance. */
  requests: number;
  tokens: number;
  /** The shared window's totals after this instance's last claim. */
  usedRequests: number;
  usedTokens: number;
  /** The shared window had nothing left at the last claim. */
  exhausted: boolean;
  claiming?: Promise<void>;
  /** Callers waiting for the next claim, and the tokens they need: one claim asks for all of them. */
  waitingRequests: number;
  waitingTokens: number;
  limits: RateSubject;
}

/** What one admitted call holds of its subjects' windows, until it is settled with what it really used. */
export interface RateAdmission {
  window: number;
  subjects: string[];
  tokens: number;
}

export const NOT_LIMITED: RateAdmission = { window: 0, subjects: [], tokens: 0 };

const limited = (subject: RateSubject) => subject.requestsPerMinute !== null || subject.tokensPerMinute !== null;

/**
 * Requests and tokens per minute, held across instances: the instances share one row per subject and minute in
 * PostgreSQL, from which each claims chunks of the minute's budget (cg_claim_rate grants what is asked or what is
 * left, never more) and spends them locally, so admitting a call costs no database round trip, except a claim
 * every CHUNK_SHARE of the limit, begun in the background before the local allowance runs out. Instances together
 * never admit more than the limit; what an instance claimed and did not spend is lost to the others until the minute
 * ends, so near the limit a team may get slightly less than its limit (at most a tenth of it per other instance),
 * never more.
 */
export class RateLimiter {
  private readonly allowances = new Map<string, Allowance>();
  /** Claims made from the shared windows (database round trips), for the metrics and the tests. */
  claims = 0;

  constructor(
    private readonly db: DbOrTx,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Admits one call of up to `tokens` for every subject, or refuses it with a 429 having spent nothing. */
  async admit(subjects: RateSubject[], tokens: number): Promise<RateAdmission> {
    const active = subjects.filter(limited);
    if (active.length === 0) return NOT_LIMITED;
    const window = this.windowOf(this.now());
    for (const subject of active) {
      if (subject.tokensPerMinute !== null && tokens > subject.tokensPerMinute) throw requestTooLarge(subject, tokens);
    }
    // Each round either admits, or claims (and a claim grants something or finds the window exhausted), so the loop
    // ends; the bound only guards against a minute's worth of callers that keep taking what this one waited for.
    for (let attempt = 0; ; attempt++) {
      const short = active.map((subject) => this.allowanceOf(subject, window)).filter((allowance) => !this.covers(allowance, tokens));
      if (short.length === 0) break;
      const refused = short.find((allowance) => allowance.exhausted && !allowance.claiming);
      if (refused || attempt >= MAX_CLAIM_ROUNDS) throw this.refusal(refused ?? short[0]!, tokens);
      await Promise.all(short.map((allowance) => this.waitForClaim(allowance, tokens)));
    }
    for (const subject of active) {
      const allowance = this.allowanceOf(subject, window);
      allowance.requests -= 1;
      allowance.tokens -= tokens;
      this.refillAhead(allowance);
    }
    return { window, subjects: active.map((subject) => subject.name), tokens };
  }

  /** A call that used `used` tokens of what it was admitted for: the difference goes back (or is taken) locally. */
  settle(admission: RateAdmission, used: number): void {
    this.giveBack(admission, 0, admission.tokens - used);
  }

  /** A call refused after its admission (no credits, a concurrency limit): it is as if it never came. */
  cancel(admission: RateAdmission): void {
    this.giveBack(admission, 1, admission.tokens);
  }

  /** OpenAI's rate limit headers for the tighter of the subjects, from what this instance knows. */
  headers(subjects: RateSubject[]): Record<string, string> {
    const window = this.windowOf(this.now());
    const reset = formatReset(window + WINDOW_MS - this.now());
    const headers: Record<string, string> = {};
    const tightest = (kind: 'requests' | 'tokens') => {
      let best: { limit: number; remaining: number } | undefined;
      for (const subject of subjects) {
        const limit = kind === 'requests' ? subject.requestsPerMinute : subject.tokensPerMinute;
        if (limit === null) continue;
        const allowance = this.allowances.get(subject.name);
        const current = allowance?.window === window ? allowance : undefined;
        const used = current ? (kind === 'requests' ? current.usedRequests - current.requests : current.usedTokens - current.tokens) : 0;
        const remaining = Math.max(0, limit - used);
        if (!best || remaining < best.remaining) best = { limit, remaining };
      }
      if (!best) return;
      headers[`x-ratelimit-limit-${kind}`] = String(best.limit);
      headers[`x-ratelimit-remaining-${kind}`] = String(best.remaining);
      headers[`x-ratelimit-reset-${kind}`] = reset;
    };
    tightest('requests');
    tightest('tokens');
    return headers;
  }

  private windowOf(now: number): number {
    return now - (now % WINDOW_MS);
  }

  private allowanceOf(subject: RateSubject, window: number): Allowance {
    const current = this.allowances.get(subject.name);
    if (current && current.window === window) {
      if (current.limits.requestsPerMinute !== subject.requestsPerMinute || current.limits.tokensPerMinute !== subject.tokensPerMinute) {
        this.applyNewLimits(current, subject);
      }
      return current;
    }
    const fresh: Allowance = {
      window,
      requests: 0,
      tokens: 0,
      usedRequests: 0,
      usedTokens: 0,
      exhausted: false,
      waitingRequests: 0,
      waitingTokens: 0,
      limits: subject,
    };
    this.allowances.set(subject.name, fresh);
    if (this.allowances.size > 100_000) this.forgetOldWindows(window);
    return fresh;
  }

  /**
   * A limit changed mid-minute (PATCH): a lower one trims what this instance claimed and has not spent to what the new
   * limit leaves of the minute, a higher one lets it claim again (the shared window checks each claim against the
   * limit the claim names).
   */
  private applyNewLimits(allowance: Allowance, subject: RateSubject): void {
    const left = (limit: number | null, used: number, unspent: number) => (limit === null ? unspent : Math.min(unspent, Math.max(0, limit - (used - unspent))));
    allowance.requests = left(subject.requestsPerMinute, allowance.usedRequests, allowance.requests);
    allowance.tokens = left(subject.tokensPerMinute, allowance.usedTokens, allowance.tokens);
    allowance.exhausted = false;
    allowance.limits = subject;
  }

  private covers(allowance: Allowance, tokens: number): boolean {
    const { requestsPerMinute, tokensPerMinute } = allowance.limits;
    return (requestsPerMinute === null || allowance.requests >= 1) && (tokensPerMinute === null || allowance.tokens >= tokens);
  }

  /** Waits for the subject's next claim, which asks for this caller's need along with every other waiter's. */
  private async waitForClaim(allowance: Allowance, tokens: number): Promise<void> {
    allowance.waitingRequests += 1;
    allowance.waitingTokens += tokens;
    try {
      // A claim already in flight was sized before this caller came: wait for it, then claim with everyone waiting.
      if (allowance.claiming) await allowance.claiming;
      if (!this.covers(allowance, tokens) && !allowance.exhausted) await this.claim(allowance);
    } finally {
      allowance.waitingRequests -= 1;
      allowance.waitingTokens -= tokens;
    }
  }

  /** One claim at a time per subject; it asks for a chunk, or for what the waiting callers need if that is more. */
  private claim(allowance: Allowance): Promise<void> {
    allowance.claiming ??= this.claimFromWindow(allowance).finally(() => {
      allowance.claiming = undefined;
    });
    return allowance.claiming;
  }

  private async claimFromWindow(allowance: Allowance): Promise<void> {
    this.claims++;
    const { requestsPerMinute, tokensPerMinute, name } = allowance.limits;
    const chunk = (limit: number | null, need: number) => (limit === null || limit < SMALL_LIMIT ? need : Math.max(need, Math.ceil(limit * CHUNK_SHARE)));
    const wantRequests = chunk(requestsPerMinute, Math.max(1, allowance.waitingRequests - allowance.requests));
    const wantTokens = chunk(tokensPerMinute, Math.max(0, allowance.waitingTokens - allowance.tokens));
    const result = await this.db.execute<{ granted_requests: number; granted_tokens: string; used_requests: number; used_tokens: string }>(sql`
      SELECT * FROM cg_claim_rate(${name}, ${new Date(allowance.window).toISOString()}::timestamptz, ${wantRequests}::int,
                                  ${wantTokens}::bigint, ${requestsPerMinute}::int, ${tokensPerMinute}::bigint)`);
    const row = result.rows[0]!;
    allowance.requests += Number(row.granted_requests);
    allowance.tokens += Number(row.granted_tokens);
    allowance.usedRequests = Number(row.used_requests);
    allowance.usedTokens = Number(row.used_tokens);
    allowance.exhausted = Number(row.granted_requests) < wantRequests || Number(row.granted_tokens) < wantTokens;
  }

  private refillAhead(allowance: Allowance): void {
    if (allowance.exhausted || allowance.claiming) return;
    const { requestsPerMinute, tokensPerMinute } = allowance.limits;
    const low = (left: number, limit: number | null) => limit !== null && limit >= SMALL_LIMIT && left < Math.ceil(limit * CHUNK_SHARE) * REFILL_BELOW;
    if (low(allowance.requests, requestsPerMinute) || low(allowance.tokens, tokensPerMinute)) {
      this.claim(allowance).catch((error: unknown) => this.log.warn({ err: error, subject: allowance.limits.name }, 'could not claim a rate limit allowance'));
    }
  }

  private giveBack(admission: RateAdmission, requests: number, tokens: number): void {
    for (const name of admission.subjects) {
      const allowance = this.allowances.get(name);
      if (!allowance || allowance.window !== admission.window) continue;
      allowance.requests += requests;
      allowance.tokens += tokens;
    }
  }

  private refusal(allowance: Allowance, tokens: number): AppError {
    const { requestsPerMinute, name } = allowance.limits;
    const byRequests = requestsPerMinute !== null && allowance.requests < 1;
    const retryAfterMs = allowance.window + WINDOW_MS - this.now();
    const who = name.startsWith('key:') ? 'key' : 'team';
    return new AppError(
      'rate_limited',
      byRequests
        ? `this ${who} made its ${requestsPerMinute} requests of this minute (requests_per_minute); retry after the window resets`
        : `this ${who} used its ${allowance.limits.tokensPerMinute} tokens of this minute (tokens_per_minute; this call may use ${tokens}); retry after the window resets`,
      { reason: byRequests ? 'requests_per_minute_limit' : 'tokens_per_minute_limit', retryAfterSeconds: Math.max(1, retryAfterMs / 1000) },
    );
  }

  private forgetOldWindows(window: number): void {
    for (const [name, allowance] of this.allowances) if (allowance.window < window && !allowance.claiming) this.allowances.delete(name);
  }
}

/** Minutes a window is kept after it began: any instance's clock is trusted to be off by less than this. */
const KEEP_WINDOWS_MINUTES = 5;
const DELETE_BATCH = 1_000;

/**
 * Deletes the shared windows of past minutes, a batch at a time (each batch a short statement, never a long lock).
 * A window is only read within its own minute, so an old one is dead weight; one deleted while an instance whose
 * clock lags by more than KEEP_WINDOWS_MINUTES still claims from it would start again from zero, and only for that
 * instance's stale minute. No index on window_start: once swept, the table holds a few minutes of rows.
 */
export async function deleteOldRateWindows(db: DbOrTx): Promise<number> {
  let deleted = 0;
  for (;;) {
    const result = await db.execute(sql`
      DELETE FROM rate_windows WHERE (subject, window_start) IN (
        SELECT subject, window_start FROM rate_windows WHERE window_start < now() - make_interval(mins => ${KEEP_WINDOWS_MINUTES})
         LIMIT ${DELETE_BATCH} FOR UPDATE SKIP LOCKED)`);
    deleted += result.rowCount ?? 0;
    if ((result.rowCount ?? 0) < DELETE_BATCH) return deleted;
  }
}

const requestTooLarge = (subject: RateSubject, tokens: number) =>
  new AppError(
    'rate_limited',
    `this call may use ${tokens} tokens (its prompt and max_tokens), more than the ${subject.tokensPerMinute} tokens per minute allowed; lower max_tokens or shorten the prompt`,
    { reason: 'request_too_large_for_limit', param: 'max_tokens' },
  );

/** OpenAI's duration format: `17.25s`. */
function formatReset(ms: number): string {
  return `${Math.max(0, Math.round(ms / 10) / 100)}s`;
}
