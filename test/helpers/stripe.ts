import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import type { ApiResponse, TestApp } from './app.js';
import { uniqueId } from './factories.js';

/**
 * A scripted Stripe API on 127.0.0.1, answering the few endpoints creditgate calls as stripe-mock would, and Stripe
 * events signed with the `stripe` package's own test-header helper, so tests go through the real verification path.
 */

export const STRIPE_WEBHOOK_SECRET = 'whsec_creditgate_test_secret';

export interface StripeRequest {
  method: string;
  path: string;
  /** The form-encoded body, flattened as Stripe encodes it: `metadata[team_id]`, `line_items[0][quantity]`... */
  form: Record<string, string>;
  idempotencyKey: string | undefined;
}

export interface ScriptedStripe {
  url: string;
  requests: StripeRequest[];
  /** Customers by id: their default payment method (null: none saved). */
  customers: Map<string, string | null>;
  /** Payment methods whose charges are declined, with the issuer's decline code. */
  declines: Map<string, string>;
  /** The line items of Checkout sessions (by session id). */
  lineItems: Map<string, { price: string; quantity: number }[]>;
  /** The payment intent that paid an invoice (by invoice id). */
  invoicePayments: Map<string, string>;
  /** The payment intents created (replays of an idempotency key excluded). */
  paymentIntentsCreated(): StripeRequest[];
  close(): Promise<void>;
}

export async function startScriptedStripe(): Promise<ScriptedStripe> {
  const requests: StripeRequest[] = [];
  const customers = new Map<string, string | null>();
  const declines = new Map<string, string>();
  const lineItems = new Map<string, { price: string; quantity: number }[]>();
  const invoicePayments = new Map<string, string>();
  /** Answers by idempotency key, replayed as Stripe does. */
  const idempotent = new Map<string, { status: number; body: unknown }>();
  const created = new Set<StripeRequest>();

  const list = (url: string, data: unknown[]) => ({ object: 'list', data, has_more: false, url });
  const error = (status: number, body: Record<string, unknown>) => ({ status, body: { error: body } });

  function route(request: StripeRequest, query: URLSearchParams): { status: number; body: unknown } {
    const { method, path, form } = request;
    if (method === 'POST' && path === '/v1/checkout/sessions') {
      const id = uniqueId('cs_test').replace('-', '_');
      return { status: 200, body: { id, object: 'checkout.session', mode: form.mode, url: `https://checkout.stripe.test/c/pay/${id}`, customer: form.customer ?? null } };
    }
    const lines = /^\/v1\/checkout\/sessions\/([^/]+)\/line_items$/.exec(path);
    if (method === 'GET' && lines) {
      const items = (lineItems.get(lines[1]!) ?? []).map((item, i) => ({ id: `li_${i}`, object: 'item', price: { id: item.price, object: 'price' }, quantity: item.quantity }));
      return { status: 200, body: list(path, items) };
    }
    const customer = /^\/v1\/customers\/([^/]+)$/.exec(path);
    if (method === 'GET' && customer) {
      const id = customer[1]!;
      if (!customers.has(id)) return error(404, { type: 'invalid_request_error', code: 'resource_missing', message: `No such customer: '${id}'`, param: 'id' });
      return { status: 200, body: { id, object: 'customer', invoice_settings: { default_payment_method: customers.get(id) } } };
    }
    if (method === 'POST' && path === '/v1/payment_intents') {
      created.add(request);
      const intent = { id: uniqueId('pi_test').replace('-', '_'), object: 'payment_intent', amount: Number(form.amount), currency: form.currency, customer: form.customer };
      const declineCode = declines.get(form.payment_method ?? '');
      if (declineCode) {
        return error(402, {
          type: 'card_error',
          code: 'card_declined',
          decline_code: declineCode,
          message: 'Your card was declined.',
          payment_intent: { ...intent, status: 'requires_payment_method' },
        });
      }
      return { status: 200, body: { ...intent, status: 'succeeded' } };
    }
    if (method === 'GET' && path === '/v1/invoice_payments') {
      const intent = invoicePayments.get(query.get('invoice') ?? '');
      const payments = intent ? [{ id: 'inpay_1', object: 'invoice_payment', status: 'paid', payment: { type: 'payment_intent', payment_intent: intent } }] : [];
      return { status: 200, body: list(path, payments) };
    }
    return error(404, { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${path})` });
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stripe.test');
      const idempotencyKey = req.headers['idempotency-key'] as string | undefined;
      const request: StripeRequest = { method: req.method ?? 'GET', path: url.pathname, form: Object.fromEntries(new URLSearchParams(text)), idempotencyKey };
      requests.push(request);
      const replayed = idempotencyKey === undefined ? undefined : idempotent.get(idempotencyKey);
      const answer = replayed ?? route(request, url.searchParams);
      if (idempotencyKey !== undefined && !replayed) idempotent.set(idempotencyKey, answer);
      res.writeHead(answer.status, { 'content-type': 'application/json', 'request-id': uniqueId('req'), ...(replayed && { 'idempotent-replayed': 'true' }) });
      res.end(JSON.stringify(answer.body));
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    customers,
    declines,
    lineItems,
    invoicePayments,
    paymentIntentsCreated: () => requests.filter((request) => created.has(request)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The environment of an app that sells credits through Stripe, against `stripe` (the scripted API). */
export const stripeEnv = (stripe: ScriptedStripe, priceCredits: Record<string, number> = {}): Record<string, string> => ({
  STRIPE_WEBHOOK_SECRET,
  STRIPE_SECRET_KEY: 'sk_test_scripted',
  STRIPE_API_URL: stripe.url,
  STRIPE_PRICE_CREDITS: JSON.stringify(priceCredits),
});

/** A Stripe event of `type` about `object`, as Stripe sends it. */
export function stripeEvent(type: string, object: Record<string, unknown>, id = uniqueId('evt_test').replace('-', '_')) {
  return { id, object: 'event', api_version: '2026-02-25.clover', created: Math.floor(Date.now() / 1000), livemode: false, pending_webhooks: 1, type, data: { object } };
}

export interface Delivery {
  /** Sign with another secret. */
  secret?: string;
  /** Seconds since the epoch the signature claims (default: now). */
  timestamp?: number;
  /** Change the body after signing it. */
  tamper?: (payload: string) => string;
  /** No Stripe-Signature header at all. */
  unsigned?: boolean;
}

/** POSTs a signed event to the app's Stripe webhook, exactly as Stripe does. */
export function deliver(app: TestApp, event: object, options: Delivery = {}): Promise<ApiResponse> {
  const payload = JSON.stringify(event);
  const signature = Stripe.webhooks.generateTestHeaderString({
    payload,
    secret: options.secret ?? STRIPE_WEBHOOK_SECRET,
    ...(options.timestamp !== undefined && { timestamp: options.timestamp }),
  });
  return app.request('POST', '/api/billing/stripe/webhook', {
    token: null,
    rawBody: options.tamper ? options.tamper(payload) : payload,
    headers: { 'content-type': 'application/json; charset=utf-8', ...(!options.unsigned && { 'stripe-signature': signature }) },
  });
}
