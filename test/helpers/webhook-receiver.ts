import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import type { AdminApi } from './factories.js';
import { query, type Database } from './postgres.js';
import { poll } from './wait.js';

export interface ReceivedWebhook {
  id: string;
  timestamp: string;
  signature: string;
  headers: IncomingMessage['headers'];
  body: string;
  json: { type: string; timestamp: string; data: Record<string, any> };
  receivedAt: number;
  /** True once the whole answer was written, false when the sender closed the connection before that. */
  answered: Promise<boolean>;
}

/**
 * What the receiver does with a request: answer with a status and a body (`body`, then `fillerBytes` of 'x'
 * streamed as fast as the sender reads them), after a delay, or never.
 */
export type ReceiverReply = { status: number; body?: string; fillerBytes?: number; headers?: Record<string, string>; delayMs?: number } | 'hang';

/**
 * A real HTTP endpoint on 127.0.0.1 that records every webhook it is sent and answers as scripted (2xx by default):
 * `reply` sees each request (with how many times its webhook-id came before) and decides, at once or later (a
 * promise: the request stays open until it settles).
 */
export interface WebhookReceiver {
  url: string;
  received: ReceivedWebhook[];
  reply: (webhook: ReceivedWebhook, seenBefore: number) => ReceiverReply | Promise<ReceiverReply>;
  /** Requests answered 'hang' and still open. */
  hanging(): number;
  /** Resolves once `count` webhooks were received (attempts, retries included) or rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  /** Resolves with the received webhooks once `check` holds for them, or rejects after `timeoutMs`. */
  waitUntil(check: (received: ReceivedWebhook[]) => boolean, what: string, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  /** The received webhooks about one team (`data.team_id`), in the order they arrived. */
  ofTeam(teamId: string): ReceivedWebhook[];
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const hanging = new Set<ServerResponse>();
  const receiver: WebhookReceiver = {
    url: '',
    received: [],
    reply: () => ({ status: 204 }),
    hanging: () => hanging.size,
    waitFor: (count, timeoutMs = 10_000) => receiver.waitUntil((received) => received.length >= count, `${count} webhooks`, timeoutMs),
    async waitUntil(check, what, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!check(receiver.received)) {
        if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms (received ${receiver.received.length} webhooks)`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return receiver.received;
    },
    ofTeam: (teamId) => receiver.received.filter((webhook) => webhook.json.data.team_id === teamId),
    close: () =>
      new Promise<void>((resolve) => {
        for (const response of hanging) response.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const webhook: ReceivedWebhook = {
        id: String(request.headers['webhook-id']),
        timestamp: String(request.headers['webhook-timestamp']),
        signature: String(request.headers['webhook-signature']),
        headers: request.headers,
        body,
        json: JSON.parse(body),
        receivedAt: Date.now(),
        answered: new Promise<boolean>((resolve) => {
          response.once('finish', () => resolve(true));
          response.once('close', () => resolve(response.writableFinished));
        }),
      };
      const seenBefore = receiver.received.filter((earlier) => earlier.id === webhook.id).length;
      receiver.received.push(webhook);
      void Promise.resolve(receiver.reply(webhook, seenBefore)).then((reply) => {
        if (reply === 'hang') {
          hanging.add(response);
          response.once('close', () => hanging.delete(response));
          return;
        }
        setTimeout(() => {
          if (response.destroyed) return;
          response.writeHead(reply.status, reply.headers);
          if (reply.body) response.write(reply.body);
          writeFiller(response, reply.fillerBytes ?? 0);
        }, reply.delayMs ?? 0);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return receiver;
}

/** Writes `bytes` of 'x' as the peer reads them (never more than the socket takes), then ends the answer. */
function writeFiller(response: ServerResponse, bytes: number): void {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  let left = bytes;
  const pump = () => {
    while (left > 0 && !response.destroyed) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!response.write(piece)) {
        response.once('drain', pump);
        return;
      }
    }
    if (!response.destroyed) response.end();
  };
  pump();
}

/** The Standard Webhooks signature, computed by the specification rather than by the library creditgate uses. */
export function specSignature(secret: string, webhook: Pick<ReceivedWebhook, 'id' | 'timestamp' | 'body'>): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${webhook.id}.${webhook.timestamp}.${webhook.body}`).digest('base64')}`;
}

/** Whether `webhook` verifies with `secret`, both by the specification's HMAC and by the standardwebhooks library. */
export function verifies(secret: string, webhook: ReceivedWebhook): boolean {
  const byHand = webhook.signature.split(' ').includes(specSignature(secret, webhook));
  let byLibrary = true;
  try {
    new Webhook(secret).verify(webhook.body, webhook.headers as Record<string, string>);
  } catch {
    byLibrary = false;
  }
  expect(byLibrary, `the hand-made HMAC and the library disagree about ${webhook.id}`).toBe(byHand);
  return byHand;
}

export interface RegisteredEndpoint {
  endpoint_id: string;
  url: string;
  events: string[] | null;
  enabled: boolean;
  secret: string;
}

/** `POST /api/webhooks/endpoints`, expected to succeed: the endpoint with its secret. */
export async function registerEndpoint(app: AdminApi, body: { url: string; events?: string[]; description?: string }): Promise<RegisteredEndpoint> {
  const created = await app.request<RegisteredEndpoint>('POST', '/api/webhooks/endpoints', { body });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  expect(created.body.secret).toMatch(/^whsec_/);
  return created.body;
}

export interface Delivery {
  delivery_id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  delivered_at: string | null;
  created_at: string;
}

/** Every delivery of an endpoint, as `GET /api/webhooks/endpoints/{id}/deliveries` pages them (newest first). */
export async function deliveriesOf(app: AdminApi, endpointId: string): Promise<Delivery[]> {
  const all: Delivery[] = [];
  let cursor: string | null = null;
  do {
    const page: { status: number; body: any } = await app.request('GET', `/api/webhooks/endpoints/${endpointId}/deliveries?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
    expect(page.status, JSON.stringify(page.body)).toBe(200);
    all.push(...page.body.data);
    cursor = page.body.next_cursor;
  } while (cursor);
  return all;
}

/** The delivery of `eventId` to the endpoint once `check` holds for it (the newest one, when it was replayed). */
export function waitForDelivery(app: AdminApi, endpointId: string, eventId: string, check: (delivery: Delivery) => boolean, what: string, timeoutMs = 10_000): Promise<Delivery> {
  return poll(
    async () => {
      const delivery = (await deliveriesOf(app, endpointId)).find((candidate) => candidate.event_id === eventId);
      return delivery && check(delivery) ? delivery : undefined;
    },
    timeoutMs,
    what,
    25,
  );
}

export interface OutboxEvent {
  id: string;
  type: string;
  team_id: string | null;
  payload: Record<string, any>;
  fanned_out: boolean;
}

/** The outbox rows (webhook_events) of one team, or all of them, in the order they were written. */
export function outboxEvents(database: Database, teamId?: string): Promise<OutboxEvent[]> {
  return teamId === undefined
    ? query(database, 'SELECT id, type, team_id, payload, fanned_out FROM webhook_events ORDER BY seq')
    : query(database, 'SELECT id, type, team_id, payload, fanned_out FROM webhook_events WHERE team_id = $1 ORDER BY seq', [teamId]);
}
