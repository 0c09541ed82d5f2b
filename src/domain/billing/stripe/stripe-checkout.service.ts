import type Stripe from 'stripe';
import type { CheckoutSession, CreateCheckoutRequest } from '../../../contracts/index.js';
import { validationFailed } from '../../../lib/errors.js';
import type { ServiceContext } from '../../context.js';
import { assertNotArchived, requireTeam } from '../../tenancy/teams.repository.js';
import { fromStripeError, stripeNotConfigured } from './stripe.errors.js';
import { chargeAmount } from './stripe-money.models.js';

const MAX_CREDITS = 1_000_000_000;

/**
 * A Stripe Checkout session selling a team credits: a pack priced at CREDIT_PRICE_USD per credit, or units of a
 * price of STRIPE_PRICE_CREDITS. Its metadata names the team and the credits, which the webhook grants once Stripe
 * reports the session paid; the team's Stripe customer pays when it has one.
 */
export async function createCheckout(ctx: ServiceContext, stripe: Stripe | undefined, teamId: string, input: CreateCheckoutRequest): Promise<CheckoutSession> {
  if (!stripe) throw stripeNotConfigured('STRIPE_SECRET_KEY');
  const team = await requireTeam(ctx.db, teamId);
  assertNotArchived(team);
  const { lineItem, credits } = lineOf(ctx, input);
  try {
    const session = await stripe.checkout.sessions.create({
      mode: 'payment',
      line_items: [lineItem],
      success_url: input.success_url,
      cancel_url: input.cancel_url,
      client_reference_id: teamId,
      metadata: { team_id: teamId, credits: String(credits) },
      ...(team.stripeCustomerId && { customer: team.stripeCustomerId }),
    });
    return { session_id: session.id, url: session.url, credits };
  } catch (error) {
    throw fromStripeError(error);
  }
}

function lineOf(ctx: ServiceContext, input: CreateCheckoutRequest): { lineItem: Stripe.Checkout.SessionCreateParams.LineItem; credits: number } {
  const mapping = ctx.config.STRIPE_PRICE_CREDITS;
  if (input.price_id !== undefined) {
    const perUnit = Object.hasOwn(mapping, input.price_id) ? mapping[input.price_id] : undefined;
    if (perUnit === undefined) throw validationFailed(`price ${input.price_id} is not in STRIPE_PRICE_CREDITS`, 'price_id', 'price_not_mapped');
    const quantity = input.quantity ?? 1;
    const credits = perUnit * quantity;
    if (credits > MAX_CREDITS) throw validationFailed(`${quantity} × ${perUnit} credits is more than one payment may buy (${MAX_CREDITS})`, 'quantity');
    return { lineItem: { price: input.price_id, quantity }, credits };
  }
  const credits = input.credits!;
  const currency = ctx.config.STRIPE_CURRENCY;
  return {
    lineItem: { quantity: 1, price_data: { currency, unit_amount: chargeAmount(credits, ctx.config.CREDIT_PRICE_USD, currency), product_data: { name: `${credits} credits` } } },
    credits,
  };
}
