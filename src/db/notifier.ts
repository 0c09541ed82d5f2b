import pg from 'pg';
import type { Logger } from '../lib/logger.js';

type Handler = (payload: string) => void;

/**
 * PostgreSQL LISTEN/NOTIFY between creditgate instances on one database: a dedicated connection listens and
 * reconnects after losing the server, and `publish` goes through the pool. Delivery is at most once and only
 * to instances listening at the time, so it carries signals (abort this call), never state.
 */
export class PgNotifier {
  private client: pg.Client | undefined;
  private readonly handlers = new Map<string, Handler[]>();
  private readonly reconnectHandlers: (() => void)[] = [];
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly pool: pg.Pool,
    private readonly log: Logger,
  ) {}

  on(channel: string, handler: Handler): void {
    this.handlers.set(channel, [...(this.handlers.get(channel) ?? []), handler]);
  }

  /** Runs after the listening connection was lost and is back: notifications sent meanwhile were missed. */
  onReconnect(handler: () => void): void {
    this.reconnectHandlers.push(handler);
  }

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, application_name: 'creditgate-notifier' });
    client.on('notification', (message) => {
      for (const handler of this.handlers.get(message.channel) ?? []) handler(message.payload ?? '');
    });
    client.on('error', (error) => {
      this.log.warn({ err: error }, 'notifier connection lost; reconnecting');
      this.reconnect();
    });
    await client.connect();
    for (const channel of this.handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    this.client = client;
  }

  private reconnect(): void {
    const lost = this.client;
    this.client = undefined;
    lost?.end().catch(() => undefined);
    if (this.stopped || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.start().then(
        () => this.reconnectHandlers.forEach((handler) => handler()),
        () => this.reconnect(),
      );
    }, 1_000);
    this.reconnectTimer.unref();
  }

  async publish(channel: string, payload: string): Promise<void> {
    await this.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    await this.client?.end().catch(() => undefined);
  }
}
