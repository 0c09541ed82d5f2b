import { asc, inArray, sql } from 'drizzle-orm';
import type { ModelPrice, SetModelPriceRequest } from '../../contracts/index.js';
import type { DbOrTx } from '../../db/client.js';
import { modelPrices } from '../../db/schema/index.js';
import { readThroughCache, type Caches } from '../caches.js';
import type { ServiceContext } from '../context.js';
import type { ModelPrice as Price } from './pricing.models.js';

type ModelPriceRow = typeof modelPrices.$inferSelect;

export async function listModelPrices(ctx: ServiceContext): Promise<{ data: ModelPrice[] }> {
  const rows = await ctx.db.select().from(modelPrices).orderBy(asc(modelPrices.modelName));
  return { data: rows.map(presentModelPrice) };
}

export async function setModelPrice(ctx: ServiceContext, modelName: string, input: SetModelPriceRequest): Promise<ModelPrice> {
  const values = { inputUsdPerMillion: input.input_usd_per_million, outputUsdPerMillion: input.output_usd_per_million };
  const [row] = await ctx.db
    .insert(modelPrices)
    .values({ modelName, ...values })
    .onConflictDoUpdate({ target: modelPrices.modelName, set: { ...values, updatedAt: sql`now()` } })
    .returning();
  await ctx.caches.invalidate({ prices: true });
  return presentModelPrice(row!);
}

/**
 * The price of a model as the upstream named it. Providers prefix names (`openai/gpt-4o`) and date them
 * (`gpt-4o-2024-08-06`), so the exact name is tried first, then without the prefix, then without the date.
 */
export async function findModelPrice(db: DbOrTx, caches: Caches, model: string): Promise<Price | undefined> {
  const price = await readThroughCache(caches.prices, db, model, async (reader) => {
    const bare = model.includes('/') ? model.slice(model.lastIndexOf('/') + 1) : model;
    const undated = bare.replace(/-\d{4}-\d{2}-\d{2}$|-\d{8}$/, '');
    const names = [...new Set([model, bare, undated])];
    const rows = await reader.select().from(modelPrices).where(inArray(modelPrices.modelName, names));
    const row = names.map((name) => rows.find((candidate) => candidate.modelName === name)).find((found) => found !== undefined);
    // "No price" is cached too: it is asked for on every call of an unpriced model.
    return { value: row ? { inputUsdPerMillion: row.inputUsdPerMillion, outputUsdPerMillion: row.outputUsdPerMillion } : null };
  });
  return price ?? undefined;
}

function presentModelPrice(row: ModelPriceRow): ModelPrice {
  return {
    model_name: row.modelName,
    input_usd_per_million: row.inputUsdPerMillion,
    output_usd_per_million: row.outputUsdPerMillion,
    updated_at: row.updatedAt.toISOString(),
  };
}
