import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../..');

/** README.md, the packages' READMEs and every page under docs/, as paths relative to the repository. */
export function documentationFiles(): string[] {
  const docs = readdirSync(path.join(REPO, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => path.join('docs', file));
  return ['README.md', 'packages/client/README.md', 'clients/python/README.md', ...docs.sort()];
}

export interface CodeBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  /** Words after the language, e.g. `norun`. */
  flags: string[];
  code: string;
}

/** The fenced code blocks of a markdown file. */
export function codeBlocks(file: string): CodeBlock[] {
  const lines = readFileSync(path.join(REPO, file), 'utf8').split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
    blocks.push({ file, line: start + 1, lang: open[1]!, flags: open[2]!.split(/\s+/).filter(Boolean), code: body.join('\n') + '\n' });
  }
  return blocks;
}

/** Markdown links `[text](target)` outside code blocks and inline code, with their line numbers. */
export function links(file: string): { line: number; target: string }[] {
  const text = readFileSync(path.join(REPO, file), 'utf8');
  const found: { line: number; target: string }[] = [];
  let inFence = false;
  text.split('\n').forEach((line, index) => {
    if (line.startsWith('```')) inFence = !inFence;
    if (inFence) return;
    const prose = line.replace(/`[^`]*`/g, '');
    for (const match of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) found.push({ line: index + 1, target: match[1]! });
    for (const match of prose.matchAll(/<a\s[^>]*href="([^"]+)"/g)) found.push({ line: index + 1, target: match[1]! });
  });
  return found;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
export function anchors(file: string): Set<string> {
  const slugs = new Set<string>();
  let inFence = false;
  for (const line of readFileSync(path.join(REPO, file), 'utf8').split('\n')) {
    if (line.startsWith('```')) inFence = !inFence;
    const heading = !inFence && /^#{1,6}\s+(.*)$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    let slug = base;
    for (let n = 1; slugs.has(slug); n++) slug = `${base}-${n}`;
    slugs.add(slug);
  }
  return slugs;
}
