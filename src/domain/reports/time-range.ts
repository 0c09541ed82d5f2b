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

/**
 * A range of whole hours split for a read of hourly and daily rows: the whole UTC days inside it that hold none of
 * `skipHours` (read per day), and the rest (read per hour), each as few ranges as possible.
 */
export function splitByDay(range: TimeRange, skipHours: ReadonlySet<number>): { days: TimeRange[]; hours: TimeRange[] } {
  const days: TimeRange[] = [];
  const hours: TimeRange[] = [];
  const add = (into: TimeRange[], from: number, to: number) => {
    const last = into.at(-1);
    if (last && last.to.getTime() === from) last.to = new Date(to);
    else if (to > from) into.push({ from: new Date(from), to: new Date(to) });
  };
  const end = range.to.getTime();
  let at = range.from.getTime();
  while (at < end) {
    const dayEnd = Math.min(ceilTo(new Date(at + 1), DAY_MS).getTime(), end);
    let whole = at % DAY_MS === 0 && dayEnd - at === DAY_MS;
    for (let hour = at; whole && hour < dayEnd; hour += HOUR_MS) whole = !skipHours.has(hour);
    add(whole ? days : hours, at, dayEnd);
    at = dayEnd;
  }
  return { days, hours };
}
