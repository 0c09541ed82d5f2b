/**
 * Keyset cursors: the sort values of a page's last row, opaque to clients (base64url JSON). Timestamps travel as
 * PostgreSQL's own text so no microsecond is lost between pages.
 */
export function encodeCursor(values: (string | null)[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

/** The values of a cursor, or null when it is not one of ours. */
export function decodeCursor(cursor: string): (string | null)[] | null {
  try {
    const values: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!Array.isArray(values) || !values.every((value) => value === null || typeof value === 'string')) return null;
    return values as (string | null)[];
  } catch {
    return null;
  }
}
