import { sql, type SQL } from 'drizzle-orm';
import type { WebhookEventType } from '../../contracts/index.js';
import type { DbOrTx } from '../../db/client.js';
import type { Bound } from '../../db/compiled-statement.js';
import { webhookEndpoints, webhookEvents } from '../../db/schema/index.js';
import { newId } from '../../lib/ids.js';

/**
 * The outbox row of one event, as SQL to run inside the statement or transaction that makes the change it
 * describes, so it is committed with the change or not at all. `row` selects its `team_id` and `payload` (one row).
 * Written only while an enabled endpoint subscribes to its type: an instance with no webhooks pays one small
 * lookup per change and writes nothing.
 */
export function outboxSql(eventId: Bound<string>, type: Bound<string>, row: SQL): SQL {
  return sql`INSERT INTO ${webhookEvents} (id, type, team_id, payload)
    SELECT ${eventId}::text, ${type}::text, r.team_id, r.payload FROM (${row}) r
     WHERE EXISTS (SELECT 1 FROM ${webhookEndpoints} WHERE enabled AND (events IS NULL OR ${type}::text = ANY(events)))`;
}

/** Writes an event in the caller's transaction (or now, autocommit, when the change was one statement before it). */
export async function recordEvent(db: DbOrTx, type: WebhookEventType, teamId: string | null, data: Record<string, unknown>): Promise<void> {
  await db.execute(outboxSql(newId('evt'), type, sql`SELECT ${teamId}::text AS team_id, ${JSON.stringify(data)}::jsonb AS payload`));
}
