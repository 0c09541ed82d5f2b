import { readFile } from 'node:fs/promises';
import { sleep } from '../../helpers/wait.js';
import { spawnServer, type ServerProcess } from '../support.js';
import type { Random } from './random.js';

/**
 * The creditgate instances of the simulation: real processes on one database and one upstream. Clients pick a
 * live one per request; an instance being stopped or restarted is not picked (its port changes on restart).
 */
export class Cluster {
  private readonly slots: (ServerProcess | undefined)[];
  /** Every process started, for the end-of-run report (output of the ones that died included). */
  readonly history: { slot: number; server: ServerProcess; startedAt: number; stoppedHow?: string }[] = [];

  constructor(
    private readonly options: { databaseUrl: string; upstreamBaseURL: string; env: Record<string, string>; size: number },
  ) {
    this.slots = Array.from({ length: options.size }, () => undefined);
  }

  async start(): Promise<void> {
    await Promise.all(this.slots.map((_, slot) => this.startSlot(slot)));
  }

  private async startSlot(slot: number): Promise<ServerProcess> {
    const server = await spawnServer({ databaseUrl: this.options.databaseUrl, upstreamBaseURL: this.options.upstreamBaseURL, env: this.options.env });
    this.slots[slot] = server;
    this.history.push({ slot, server, startedAt: Date.now() });
    return server;
  }

  /** The process in `slot`, if it is up. */
  at(slot: number): ServerProcess | undefined {
    return this.slots[slot];
  }

  live(): ServerProcess[] {
    return this.slots.filter((server): server is ServerProcess => server !== undefined && !server.exited());
  }

  /** A live instance, chosen by `rng` (else Math.random); waits while none is up. */
  async pick(rng?: Random): Promise<ServerProcess> {
    for (let waited = 0; ; waited += 50) {
      const live = this.live();
      if (live.length > 0) return rng ? rng.pick(live) : live[Math.floor(Math.random() * live.length)]!;
      if (waited > 60_000) throw new Error('no creditgate instance came back within 60 s');
      await sleep(50);
    }
  }

  /** SIGTERM (graceful: drains, then stops), then a new process in the same slot. */
  async gracefulRestart(slot: number, graceMs: number): Promise<void> {
    const server = this.slots[slot]!;
    this.slots[slot] = undefined;
    this.markStopped(server, 'SIGTERM');
    await server.stop(graceMs);
    await this.startSlot(slot);
  }

  /** kill -9, then a new process in the same slot. */
  async crashRestart(slot: number): Promise<void> {
    const server = this.slots[slot]!;
    this.slots[slot] = undefined;
    this.markStopped(server, 'SIGKILL');
    await server.kill9();
    await this.startSlot(slot);
  }

  private markStopped(server: ServerProcess, how: string) {
    const entry = this.history.find((h) => h.server === server);
    if (entry) entry.stoppedHow = how;
  }

  /** How the process with this pid was stopped by the simulation, if it was. */
  stoppedHow(pid: number | undefined): string | undefined {
    return this.history.find((h) => h.server.child.pid === pid)?.stoppedHow;
  }

  /** Resident memory of each live process, from /proc (MB). */
  async rss(): Promise<{ slot: number; pid: number; rssMb: number }[]> {
    const result: { slot: number; pid: number; rssMb: number }[] = [];
    for (const [slot, server] of this.slots.entries()) {
      if (!server || server.exited() || server.child.pid === undefined) continue;
      const status = await readFile(`/proc/${server.child.pid}/status`, 'utf8');
      const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
      result.push({ slot, pid: server.child.pid, rssMb: Math.round(kb / 1024) });
    }
    return result;
  }
}
