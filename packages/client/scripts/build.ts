/**
 * Builds dist/: ESM (index.js) and CommonJS (index.cjs) bundles with their declarations (index.d.ts, index.d.cts),
 * by tsup. The sources are staged in .build/ with src/contracts.ts replaced by its expansion, so the published
 * types are those of the server's zod contracts without depending on zod.
 */
import { cp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';
import { expandContracts } from './expand-contracts.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const staged = path.join(root, '.build');
process.chdir(root);

await rm(staged, { recursive: true, force: true });
await cp(path.join(root, 'src'), path.join(staged, 'src'), { recursive: true });
await writeFile(path.join(staged, 'src/contracts.ts'), expandContracts(path.join(root, 'src/contracts.ts'), path.join(root, 'tsconfig.json')));

await build({
  entry: { index: path.join(staged, 'src/index.ts') },
  outDir: 'dist',
  format: ['esm', 'cjs'],
  dts: true,
  // Web-platform JavaScript only: no Node built-ins, nothing runtime-specific.
  platform: 'neutral',
  target: 'es2022',
  tsconfig: 'tsconfig.build.json',
  sourcemap: false,
  clean: true,
  treeshake: true,
  silent: true,
});
await rm(staged, { recursive: true, force: true });
console.error('built packages/client/dist');
