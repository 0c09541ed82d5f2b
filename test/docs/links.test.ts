import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { anchors, documentationFiles, links, REPO } from './markdown.js';

/** Every link in the README and the docs resolves inside the repository: no page sends a reader elsewhere. */
describe.each(documentationFiles())('%s', (file) => {
  it('links only to files and headings that exist in the repository', () => {
    const broken: string[] = [];
    for (const { line, target } of links(file)) {
      const where = `${file}:${line} ${target}`;
      if (/^[a-z][a-z+.-]*:/i.test(target) || target.startsWith('//')) {
        broken.push(`${where}: links outside the repository`);
        continue;
      }
      const [pathPart, anchor] = target.split('#') as [string, string | undefined];
      const resolved = pathPart ? path.resolve(REPO, path.dirname(file), decodeURIComponent(pathPart)) : path.join(REPO, file);
      if (resolved !== REPO && !resolved.startsWith(REPO + path.sep)) broken.push(`${where}: outside the repository`);
      else if (!existsSync(resolved)) broken.push(`${where}: no such file`);
      else if (anchor && resolved.endsWith('.md') && !anchors(path.relative(REPO, resolved)).has(anchor)) broken.push(`${where}: no such heading`);
    }
    expect(broken).toEqual([]);
  });
});

it('the documentation has the pages the README points to', () => {
  const targets = links('README.md').map((link) => link.target.split('#')[0]);
  expect(targets).toContain('docs/README.md');
  expect(documentationFiles().length).toBeGreaterThan(8);
});
