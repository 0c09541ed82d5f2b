import Stripe from 'stripe';
import type { Config } from '../../../config.js';

/** Long enough for a card network's answer; a charge holds its refill's row lock meanwhile. */
const TIMEOUT_MS = 30_000;

/**
 * The Stripe API client, when STRIPE_SECRET_KEY is set. STRIPE_API_URL points it elsewhere (stripe-mock, a proxy,
 * a test's scripted server). Network retries reuse one idempotency key, so a retried POST never charges twice.
 */
export function createStripeClient(config: Config): Stripe | undefined {
  if (!config.STRIPE_SECRET_KEY) return undefined;
  const url = new URL(config.STRIPE_API_URL);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return new Stripe(config.STRIPE_SECRET_KEY, {
    host: url.hostname,
    port: url.port || (protocol === 'http' ? 80 : 443),
    protocol,
    maxNetworkRetries: 2,
    timeout: TIMEOUT_MS,
    telemetry: false,
  });
}
