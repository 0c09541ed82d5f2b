import { z } from 'zod';

/**
 * The fields creditgate reads from the objects of Stripe's events, read leniently: an event is rendered in the API
 * version of the webhook endpoint that receives it, so a field moved by a newer version (an invoice's payment intent,
 * a line's price) is looked for where each version puts it.
 */

const Id = z.string().min(1).max(255);
/** An id, or the object it names when expanded. */
const Ref = z.union([Id, z.object({ id: Id })]).transform((value) => (typeof value === 'string' ? value : value.id));
const Metadata = z
  .record(z.string(), z.string())
  .nullish()
  .transform((metadata) => metadata ?? {});

export type StripeMetadata = z.output<typeof Metadata>;

export const StripeEventEnvelope = z.object({ id: Id, type: z.string().min(1).max(255), data: z.object({ object: z.record(z.string(), z.unknown()) }) });
export type StripeEventEnvelope = z.output<typeof StripeEventEnvelope>;

export const CheckoutSessionObject = z.object({
  id: Id,
  mode: z.string(),
  payment_status: z.string(),
  metadata: Metadata,
  customer: Ref.nullish(),
  payment_intent: Ref.nullish(),
});

const InvoiceLine = z.object({
  quantity: z.number().int().nullish(),
  /** Before API version 2025-03-31. */
  price: z.object({ id: Id }).nullish(),
  pricing: z.object({ price_details: z.object({ price: Ref }).nullish() }).nullish(),
});

export const InvoiceObject = z.object({
  id: Id,
  metadata: Metadata,
  customer: Ref.nullish(),
  lines: z.object({ data: z.array(InvoiceLine), has_more: z.boolean().optional() }),
  /** Before API version 2025-03-31; later versions list the invoice's payments instead. */
  payment_intent: Ref.nullish(),
  payments: z.object({ data: z.array(z.object({ payment: z.object({ payment_intent: Ref.nullish() }) })) }).nullish(),
  parent: z.object({ subscription_details: z.object({ metadata: Metadata }).nullish() }).nullish(),
});
export type InvoiceObject = z.output<typeof InvoiceObject>;

export const PaymentIntentObject = z.object({
  id: Id,
  metadata: Metadata,
  last_payment_error: z.object({ message: z.string().nullish(), code: z.string().nullish(), decline_code: z.string().nullish() }).nullish(),
});

export const ChargeObject = z.object({
  id: Id,
  amount: z.number().int().min(0),
  amount_refunded: z.number().int().min(0),
  payment_intent: Ref.nullish(),
});

/** The price of an invoice line, wherever the event's API version put it. */
export function linePriceId(line: z.output<typeof InvoiceLine>): string | null {
  return line.pricing?.price_details?.price ?? line.price?.id ?? null;
}

/** Whole credits named by metadata (`credits`): undefined when absent, null when not a positive whole number. */
export function metadataCredits(metadata: StripeMetadata): number | null | undefined {
  const value = metadata.credits;
  if (value === undefined) return undefined;
  return /^[1-9]\d{0,9}$/.test(value.trim()) && Number(value) <= 1_000_000_000 ? Number(value) : null;
}
