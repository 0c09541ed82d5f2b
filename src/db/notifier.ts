import pg from 'pg';
import type { Logger } from '../lib/logger.js';
import { closeConnection } from './client.js';

type Handler = (payload: string) => void;

/** The listening connection's application_name: how instances count one another (pg_stat_activity). */
export const NOTIFIER_APPLICATION_NAME = 'creditgate-notifier';

/** How often the listening connection is checked for an answer (see checkLiveness). */
const LIVENESS_INTERVAL_MS = 5_000;

/**
 * PostgreSQL LISTEN/NOTIFY between creditgate instances on one database: a dedicated connection listens and
 * reconnects after losing the server, and `publish` goes through the pool. LISTEN belongs to a session, so `url`
 * must reach PostgreSQL directly (DATABASE_DIRECT_URL): through a transaction pooler the LISTEN would stay on
 * whichever server connection ran it. NOTIFY is delivered when its transaction commits, so the pool may be pooled.
 * Delivery is at most once and only to instances listening at the time, so it carries signals (abort this call),
 * never state.
 */
export class PgNotifier {
  private client: pg.Client | undefined;
  private readonly handlers = new Map<string, Handler[]>();
  private readonly reconnectHandlers: (() => void)[] = [];
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;

  private livenessTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly timeouts: { timeoutMs: number; connectTimeoutMs: number },
  ) {}

  on(channel: string, handler: Handler): void {
    this.handlers.set(channel, [...(this.handlers.get(channel) ?? []), handler]);
  }

  /** Runs after the listening connection was lost and is back: notifications sent meanwhile were missed. */
  onReconnect(handler: () => void): void {
    this.reconnectHandlers.push(handler);
  }

  async start(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      application_name: NOTIFIER_APPLICATION_NAME,
      keepAlive: true,
      connectionTimeoutMillis: this.timeouts.connectTimeoutMs,
      query_timeout: this.timeouts.timeoutMs,
    });
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
    this.checkLiveness(client);
  }

  /**
   * A listening connection only reads: cut off without being closed (a network partition), it would wait for
   * notifications that never come, and cancels and cache invalidations from other instances would be missed until
   * the kernel gave the connection up. So it is asked a question every interval; one unanswered within the
   * statement timeout closes it, and it is replaced like a connection the server closed.
   */
  private checkLiveness(client: pg.Client): void {
    clearTimeout(this.livenessTimer);
    this.livenessTimer = setTimeout(() => {
      if (this.client !== client) return;
      client.query('SELECT 1').then(
        () => this.checkLiveness(client),
        (error: unknown) => {
          if (this.client !== client) return;
          this.log.warn({ err: error }, 'notifier connection unresponsive; reconnecting');
          closeConnection(client);
          this.reconnect();
        },
      );
    }, LIVENESS_INTERVAL_MS);
    this.livenessTimer.unref();
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

  /** How many instances are listening on this database now (this one included). */
  async countListeners(): Promise<number> {
    const result = await this.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
      [NOTIFIER_APPLICATION_NAME],
    );
    return result.rows[0]?.n ?? 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.livenessTimer);
    await this.client?.end().catch(() => undefined);
  }
}
