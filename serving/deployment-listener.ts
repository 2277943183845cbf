/**
 * A dedicated Postgres connection that LISTENs on the deployments channel. Pooled connections cannot LISTEN (a
 * notification goes to the session that listened), so this is one `pg.Client` of its own, reconnected with
 * exponential backoff and jitter whenever it fails. Notifications sent while it was down are lost: after every
 * (re)connect `onConnected` runs, and the pool re-reads every deployment then.
 */
import pg from 'pg';
import type { Logger } from '../core/logger.js';

export interface DeploymentListenerOptions {
  readonly connectionString: string;
  readonly channel: string;
  readonly logger: Logger;
  /** Called with each notification's payload. */
  readonly onNotification: (payload: string) => void;
  /** Called after each successful connect (the first included), once LISTEN is in effect. */
  readonly onConnected?: () => void;
  /** Shown in pg_stat_activity. Default `mlops-serving-listener`. */
  readonly applicationName?: string;
  /** First reconnect delay in ms; doubles per failed attempt up to `maxBackoffMs`. Default 250. */
  readonly initialBackoffMs?: number;
  /** Default 30 000. */
  readonly maxBackoffMs?: number;
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export class DeploymentListener {
  readonly #options: DeploymentListenerOptions;
  #client: pg.Client | undefined;
  readonly #lost = new WeakSet<pg.Client>();
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #connected = false;

  constructor(options: DeploymentListenerOptions) {
    this.#options = options;
  }

  /** Whether LISTEN is in effect right now. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Starts connecting in the background; failures are logged and retried, never thrown. */
  start(): void {
    void this.#connect();
  }

  /** Stops reconnecting and ends the connection. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    this.#connected = false;
    if (client) {
      this.#lost.add(client);
      await client.end().catch(() => undefined);
    }
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const { connectionString, channel, logger } = this.#options;
    const client = new pg.Client({
      connectionString,
      application_name: this.#options.applicationName ?? 'mlops-serving-listener',
      keepAlive: true,
    });
    client.on('error', (error) => this.#onLost(client, error));
    client.on('end', () => this.#onLost(client));
    client.on('notification', (message) => {
      if (message.channel === channel) this.#options.onNotification(message.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdentifier(channel)}`);
    } catch (error) {
      this.#onLost(client, error);
      return;
    }
    if (this.#closed || this.#lost.has(client)) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#connected = true;
    if (this.#attempt > 0) logger.info({ channel, attempts: this.#attempt }, 'deployment listener reconnected');
    this.#attempt = 0;
    this.#options.onConnected?.();
  }

  #onLost(client: pg.Client, error?: unknown): void {
    if (this.#lost.has(client)) return;
    this.#lost.add(client);
    if (this.#client === client) {
      this.#client = undefined;
      this.#connected = false;
    }
    client.end().catch(() => undefined);
    if (this.#closed) return;
    const initial = this.#options.initialBackoffMs ?? 250;
    const max = this.#options.maxBackoffMs ?? 30_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.#attempt, 20));
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.#attempt++;
    this.#options.logger.warn(
      { err: error, channel: this.#options.channel, retryInMs: delay, attempt: this.#attempt },
      'deployment listener lost its connection; reconnecting (polling still refreshes deployments)',
    );
    this.#timer = setTimeout(() => void this.#connect(), delay);
    this.#timer.unref();
  }
}
