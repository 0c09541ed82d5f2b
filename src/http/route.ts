import type { Request, Response } from 'express';
import type { z } from 'zod';
import type { Deps } from '../deps.js';
import type { ServiceContext } from '../domain/context.js';

/** Who may call a route. `team_or_admin` routes are scoped to the key's own team (others answer 404). */
export type RouteAuth = 'public' | 'admin' | 'team' | 'team_or_admin';

type Schema = z.ZodType;
type Infer<S> = S extends z.ZodType ? z.output<S> : undefined;

export interface HandlerInput<P, Q, B> {
  params: Infer<P>;
  query: Infer<Q>;
  body: Infer<B>;
  /** The body's bytes, unparsed, on a `rawBody` route. */
  rawBody: Buffer | undefined;
  ctx: ServiceContext;
  deps: Deps;
  req: Request;
  res: Response;
  /** With an Idempotency-Key on a `long` route: stores the answer now (a stream, before its last frame). */
  answered?: ((body: unknown) => Promise<void>) | undefined;
}

/**
 * A route is its contract plus a thin handler: the same object mounts it on express and documents it in
 * OpenAPI, so the two cannot disagree.
 */
export interface RouteSpec<P extends Schema | undefined = any, Q extends Schema | undefined = any, B extends Schema | undefined = any> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI style: `/api/teams/{team_id}`. */
  path: string;
  auth: RouteAuth;
  summary: string;
  tags: string[];
  params?: P;
  query?: Q;
  body?: B;
  /**
   * Instead of `body`: the body is read as bytes (any content type, up to BODY_LIMIT) and given to the handler as
   * `rawBody`, for a signature computed over exactly those bytes (Stripe's webhook); `schema` documents it.
   */
  rawBody?: { schema: Schema; description: string };
  /**
   * Honour `Idempotency-Key`. `transaction`: the handler runs in the claim's transaction. `long` (calls the
   * upstream): the claim is committed first and the answer stored after. Stream handlers return
   * `streamedAnswer(callId)` and are replayed from the recorded call.
   */
  idempotent?: 'transaction' | 'long';
  /** On a `transaction` route: the answer holds a secret shown once (a virtual key, a signing secret), kept sealed for replay. */
  secretInAnswer?: true;
  response: { status?: number; schema?: Schema; description: string; contentType?: string };
  /** Error statuses worth documenting beyond the ones every route of this auth kind can return. */
  errors?: number[];
  /** Returns the JSON body, or undefined after writing the response itself (streams). */
  handler: (input: HandlerInput<P, Q, B>) => Promise<unknown>;
}

export function defineRoute<P extends Schema | undefined = undefined, Q extends Schema | undefined = undefined, B extends Schema | undefined = undefined>(
  spec: RouteSpec<P, Q, B>,
): RouteSpec<P, Q, B> {
  return spec;
}

export function expressPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, ':$1');
}

/** What a stream handler returns: the response is already written; a replay rebuilds it from the call record. */
export interface StreamedAnswer {
  stream_call_id: string;
}

export const streamedAnswer = (callId: string): StreamedAnswer => ({ stream_call_id: callId });
