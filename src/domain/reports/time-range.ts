import { validationFailed } from '../../lib/errors.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export interface TimeRange {
  from: Date;
  to: Date;
}

export interface RangeQuery {
  from?: string | undefined;
  to?: string | undefined;
  /** A calendar month, YYYY-MM (UTC); the contracts refuse it together with from or to. */
  period?: string | undefined;
}

/** [from, to) of a query: a month when `period` is given, else from/to with the last `defaultDays` days as default. */
export function rangeOf(query: RangeQuery, now: Date = new Date(), defaultDays = 30): TimeRange {
  if (query.period) {
    const [year, month] = query.period.split('-').map(Number) as [number, number];
    return { from: new Date(Date.UTC(year, month - 1, 1)), to: new Date(Date.UTC(year, month, 1)) };
  }
  const to = query.to ? new Date(query.to) : now;
  const from = query.from ? new Date(query.from) : new Date(to.getTime() - defaultDays * DAY_MS);
  if (from >= to) throw validationFailed('from must be before to', 'from');
  return { from, to };
}

export const floorTo = (date: Date, unitMs: number) => new Date(Math.floor(date.getTime() / unitMs) * unitMs);
export const ceilTo = (date: Date, unitMs: number) => new Date(Math.ceil(date.getTime() / unitMs) * unitMs);
