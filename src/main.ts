import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { createDeps } from './deps.js';
import { createHttpServer } from './http/server.js';
import { shutDownGracefully } from './http/shutdown.js';
import { tuneGarbageCollector } from './lib/gc-tuning.js';
import { createLogger } from './lib/logger.js';

async function main(): Promise<void> {
  tuneGarbageCollector();
  // A .env file is optional; variables already set in the environment win over it.
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = loadConfig();
  const log = createLogger(config.LOG_LEVEL);
  const deps = await createDeps(config, log);
  if (deps.generatedMasterKey) {
    // Printed on stdout exactly once, on the start that created it; only its hash is stored.
    process.stdout.write(
      `\ncreditgate generated an admin MASTER_KEY (shown only this once, store it now):\n\n  MASTER_KEY=${deps.generatedMasterKey}\n\n`,
    );
  }
  const server = createHttpServer(createApp(deps), deps.config).listen(config.PORT, config.HOST);
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const { port } = server.address() as AddressInfo;
  log.info({ port }, `creditgate listening on http://localhost:${port}`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stop requested');
    await shutDownGracefully(server, deps);
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`creditgate: ${error.message}\n`);
  } else {
    process.stderr.write(`creditgate failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  }
  process.exit(1);
});
