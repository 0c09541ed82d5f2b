import Stripe from 'stripe';
import { AppError } from '../../../lib/errors.js';

/** The refusals of selling credits through Stripe, each with the code clients (and Stripe's dashboard) show. */

export const stripeNotConfigured = (variable: 'STRIPE_WEBHOOK_SECRET' | 'STRIPE_SECRET_KEY') =>
  new AppError('conflict', `Stripe is not configured on this server: set ${variable}`, { reason: 'stripe_not_configured' });

export const signatureRefused = (detail: string) =>
  new AppError('validation_failed', `Stripe-Signature refused: ${detail}`, { reason: 'stripe_signature_invalid', param: 'Stripe-Signature' });

export const eventInvalid = (why: string) => new AppError('validation_failed', `not a Stripe event creditgate can read: ${why}`, { reason: 'stripe_event_invalid' });

export type UnknownToUs = 'stripe_unknown_team' | 'stripe_no_credits' | 'stripe_unknown_payment' | 'stripe_unknown_refill';

/**
 * A signed event creditgate cannot act on: it names no team or credits it knows. 400, so Stripe retries it for a
 * while (after the team or price mapping is fixed, or the payment it refunds has arrived, a retry goes through).
 */
export const eventUnknown = (eventId: string, reason: UnknownToUs, why: string) =>
  new AppError('validation_failed', `Stripe event ${eventId}: ${why}`, { reason });

/** What to throw for a failed call to Stripe's API: a request Stripe refused is a 400, any other Stripe error a 502. */
export function fromStripeError(error: unknown): unknown {
  if (!(error instanceof Stripe.errors.StripeError)) return error;
  if (error instanceof Stripe.errors.StripeInvalidRequestError) {
    return new AppError('validation_failed', `Stripe refused the request: ${error.message}`, { reason: 'stripe_invalid_request', param: error.param ?? null, cause: error });
  }
  return new AppError('upstream_error', `Stripe failed: ${error.message}`, { reason: 'stripe_error', cause: error });
}
