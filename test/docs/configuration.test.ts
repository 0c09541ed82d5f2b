import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config.js';
import { REPO } from './markdown.js';

/** docs/operations.md's configuration table lists exactly the variables the server reads. */
it('the configuration table of docs/operations.md has every variable of src/config.ts and no other', () => {
  const page = readFileSync(path.join(REPO, 'docs/operations.md'), 'utf8');
  const documented = [...page.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((match) => match[1]);
  expect([...documented].sort()).toEqual(Object.keys(ConfigSchema.shape).sort());
});
