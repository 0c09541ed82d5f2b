/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): the functions with the most self time, and self time by
 * where the code lives (creditgate's src/, each node_modules package, Node internals, GC, idle).
 * Run alone: npx tsx bench/profile.ts <file.cpuprofile> [top]
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  pct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  top: ProfileRow[];
  byArea: ProfileRow[];
  /** Inclusive time (self + callees) of creditgate's own functions (src/): which operations cost the most. */
  inclusiveSrc: ProfileRow[];
}

function area(url: string, functionName: string): string {
  if (functionName === '(garbage collector)') return '(gc)';
  if (functionName === '(idle)') return '(idle)';
  if (functionName === '(program)') return '(program: native, not JS)';
  if (!url) return '(native/builtin)';
  const modules = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (modules) return `npm:${modules[1]}`;
  if (url.startsWith('node:')) return 'node internals';
  const src = url.match(/\/(src|bench)\/(.*)$/);
  if (src) return `${src[1]}/${(src[2] ?? '').split('/').slice(0, -1).join('/') || '.'}`;
  return url;
}

function shortUrl(url: string): string {
  return url
    .replace(/^file:\/\//, '')
    .replace(/^.*node_modules\//, '')
    .replace(/^.*\/(src|bench)\//, '$1/');
}

export async function summariseProfile(file: string, top = 25): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // Each sample's time is the delta to the next sample.
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number;
    const delta = deltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, delta));
  }
  const functions = new Map<string, ProfileRow>();
  const areas = new Map<string, ProfileRow>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    totalUs += us;
    const name = functionName || '(anonymous)';
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${name}@${where}`;
    const row = functions.get(key) ?? { name, where, selfMs: 0, pct: 0 };
    row.selfMs += us / 1000;
    functions.set(key, row);
    const areaName = area(url, functionName);
    const areaRow = areas.get(areaName) ?? { name: areaName, where: '', selfMs: 0, pct: 0 };
    areaRow.selfMs += us / 1000;
    areas.set(areaName, areaRow);
  }
  // Inclusive time of src/ functions: each sample counts once for every distinct src/ frame on its stack.
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const inclusive = new Map<string, ProfileRow>();
  for (const [id, us] of selfUs) {
    if (byId.get(id)?.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame || !/\/src\//.test(frame.url)) continue;
      const name = frame.functionName || '(anonymous)';
      const where = `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
      const key = `${name}@${where}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const row = inclusive.get(key) ?? { name, where, selfMs: 0, pct: 0 };
      row.selfMs += us / 1000;
      inclusive.set(key, row);
    }
  }
  const finish = (rows: Iterable<ProfileRow>, limit: number) =>
    [...rows]
      .map((row) => ({ ...row, selfMs: Math.round(row.selfMs * 10) / 10, pct: totalUs ? (100 * row.selfMs * 1000) / totalUs : 0 }))
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, limit);
  return {
    file,
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    top: finish(functions.values(), top),
    byArea: finish(areas.values(), 20),
    inclusiveSrc: finish(inclusive.values(), 20),
  };
}

/** Where the self time of functions named `name` comes from: their call stacks (innermost first), by time. */
export async function callersOf(file: string, name: string, depth = 6, top = 10): Promise<{ stack: string; selfMs: number }[]> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i] as number, (selfUs.get(samples[i] as number) ?? 0) + Math.max(0, deltas[i + 1] ?? 0));
  const stacks = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (byId.get(id)?.callFrame.functionName !== name) continue;
    const frames: string[] = [];
    for (let at = parentOf.get(id); at !== undefined && frames.length < depth; at = parentOf.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame) break;
      frames.push(`${frame.functionName || '(anonymous)'}${frame.url ? ` ${shortUrl(frame.url)}:${frame.lineNumber + 1}` : ''}`);
    }
    const key = frames.join(' < ');
    stacks.set(key, (stacks.get(key) ?? 0) + us);
  }
  return [...stacks.entries()]
    .map(([stack, us]) => ({ stack, selfMs: Math.round(us / 100) / 10 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top);
}

export function formatProfile(summary: ProfileSummary): string {
  const lines = [
    `CPU profile of the creditgate process: ${summary.file}`,
    `  busy ${(summary.totalMs / 1000).toFixed(1)} s of samples (idle ${(summary.idleMs / 1000).toFixed(1)} s not counted)`,
    '  self time by area:',
    ...summary.byArea.map((row) => `    ${row.pct.toFixed(1).padStart(5)}%  ${row.selfMs.toFixed(0).padStart(7)} ms  ${row.name}`),
    '  top functions by self time:',
    ...summary.top.map((row) => `    ${row.pct.toFixed(1).padStart(5)}%  ${row.selfMs.toFixed(0).padStart(7)} ms  ${row.name}  ${row.where}`),
    "  creditgate's own functions by inclusive time (self + everything they call, synchronously):",
    ...summary.inclusiveSrc.map((row) => `    ${row.pct.toFixed(1).padStart(5)}%  ${row.selfMs.toFixed(0).padStart(7)} ms  ${row.name}  ${row.where}`),
  ];
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [file, second, third] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: npx tsx bench/profile.ts <file.cpuprofile> [top]\n       npx tsx bench/profile.ts <file.cpuprofile> --callers <function> [depth]\n');
    process.exit(2);
  }
  const run =
    second === '--callers'
      ? callersOf(file, third ?? '', Number(process.argv[5] ?? 6), 15).then((rows) =>
          rows.map((row) => `${row.selfMs.toFixed(1).padStart(8)} ms  ${row.stack}`).join('\n'),
        )
      : summariseProfile(file, Number(second ?? 25)).then(formatProfile);
  run.then(
    (text) => process.stdout.write(`${text}\n`),
    (error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exit(1);
    },
  );
}
