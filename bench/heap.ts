/**
 * What grew between two V8 heap snapshots, by constructor (or kind of value): count and self size. Used by the
 * memory phase with BENCH_HEAP_SNAPSHOT=1 to show what one open stream keeps alive.
 * Run alone: npx tsx bench/heap.ts <before.heapsnapshot> <after.heapsnapshot> [streams] [top]
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export interface HeapGrowthRow {
  name: string;
  count: number;
  bytes: number;
}

async function tally(file: string): Promise<Map<string, { count: number; bytes: number }>> {
  const snapshot = JSON.parse(await readFile(file, 'utf8')) as HeapSnapshot;
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const totals = new Map<string, { count: number; bytes: number }>();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt] as number] ?? '?';
    const rawName = strings[nodes[i + nameAt] as number] ?? '?';
    // Strings and code are grouped by kind; objects and closures by constructor / function name.
    const name =
      type === 'object' || type === 'closure' || type === 'native'
        ? `${type === 'object' ? '' : `(${type}) `}${rawName.slice(0, 80)}`
        : `(${type})`;
    const entry = totals.get(name) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += nodes[i + sizeAt] as number;
    totals.set(name, entry);
  }
  return totals;
}

export async function heapGrowth(before: string, after: string, top = 25): Promise<{ rows: HeapGrowthRow[]; totalBytes: number }> {
  const [a, b] = [await tally(before), await tally(after)];
  const rows: HeapGrowthRow[] = [];
  let totalBytes = 0;
  for (const [name, { count, bytes }] of b) {
    const old = a.get(name) ?? { count: 0, bytes: 0 };
    const row = { name, count: count - old.count, bytes: bytes - old.bytes };
    totalBytes += row.bytes;
    if (row.bytes > 0) rows.push(row);
  }
  for (const [name, old] of a) if (!b.has(name)) totalBytes -= old.bytes;
  return { rows: rows.sort((x, y) => y.bytes - x.bytes).slice(0, top), totalBytes };
}

export function formatHeapGrowth(growth: { rows: HeapGrowthRow[]; totalBytes: number }, streams: number): string {
  return [
    `heap growth with ${streams} open streams: ${(growth.totalBytes / 1024 / streams).toFixed(1)} KiB per stream (self sizes; by constructor):`,
    ...growth.rows.map(
      (row) =>
        `  ${(row.bytes / 1024 / streams).toFixed(2).padStart(7)} KiB  ${(row.count / streams).toFixed(1).padStart(6)} per stream  ${row.name}`,
    ),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [before, after, streams, top] = process.argv.slice(2);
  if (!before || !after) {
    process.stderr.write('usage: npx tsx bench/heap.ts <before.heapsnapshot> <after.heapsnapshot> [streams] [top]\n');
    process.exit(2);
  }
  heapGrowth(before, after, Number(top ?? 25)).then(
    (growth) => process.stdout.write(`${formatHeapGrowth(growth, Number(streams ?? 1))}\n`),
    (error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exit(1);
    },
  );
}
