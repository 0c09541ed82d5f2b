#!/usr/bin/env node
/**
 * Builds the operator console (vite) when console/dist is missing or older than its sources: `npm start` and
 * `npm run test:browser` run this first, so a fresh clone serves the console after `npm ci && npm start`. The
 * sources are fingerprinted (the console, the client it bundles, the contracts and the lockfile); the build records
 * the fingerprint in dist/.source-hash. `--force` builds anyway.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dist = path.join(root, 'console/dist');
const SOURCES = ['console/src', 'console/index.html', 'console/vite.config.ts', 'console/package.json', 'packages/client/src', 'src/contracts', 'package-lock.json'];

function files(relative) {
  const full = path.join(root, relative);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [relative];
  return readdirSync(full)
    .sort()
    .flatMap((name) => files(path.join(relative, name)));
}

function fingerprint() {
  const hash = createHash('sha256');
  for (const file of SOURCES.flatMap(files)) hash.update(file).update('\0').update(readFileSync(path.join(root, file))).update('\0');
  return hash.digest('hex');
}

const wanted = fingerprint();
const recorded = path.join(dist, '.source-hash');
const current = existsSync(recorded) ? readFileSync(recorded, 'utf8').trim() : null;
if (!process.argv.includes('--force') && current === wanted && existsSync(path.join(dist, 'index.html'))) process.exit(0);

const vite = path.join(root, 'node_modules/vite/bin/vite.js');
if (!existsSync(vite)) {
  // A production install without the console's build tools: serve what was built, or nothing (the server says so).
  console.error(existsSync(path.join(dist, 'index.html')) ? 'console: vite is not installed; serving the console built before' : 'console: vite is not installed; the console is not built');
  process.exit(0);
}
console.error(current ? 'console: sources changed, rebuilding console/dist' : 'console: building console/dist');
const result = spawnSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], { cwd: path.join(root, 'console'), stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
writeFileSync(recorded, `${wanted}\n`);
