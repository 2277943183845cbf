import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { isErrnoException, ServiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export interface StartApiServerOptions {
  /** The app to serve (anything with Hono's `fetch`, whatever its environment and routes). */
  readonly app: { fetch(request: Request): Response | Promise<Response> };
  readonly host: string;
  /** 0 picks a free port; the chosen one is in the returned `url`. */
  readonly port: number;
  readonly logger: Logger;
  /** How long `close()` waits for in-flight requests before cutting their connections. Default 10 000 ms. */
  readonly shutdownTimeoutMs?: number;
}

export interface ApiServer {
  /** Base URL the server listens on, for example `http://127.0.0.1:3000`. */
  readonly url: string;
  /**
   * Stops accepting connections, lets in-flight requests finish (up to `shutdownTimeoutMs`, then closes their
   * connections) and resolves when the server is closed. Safe to call more than once.
   */
  close(): Promise<void>;
  /**
   * Resolves when the server has closed after `close()`; rejects if it stops listening without being asked to, so
   * a supervisor (`npm start`) can start it again.
   */
  readonly finished: Promise<void>;
}

function urlFor(host: string, port: number): string {
  // A wildcard address is not something a client can connect to; loopback reaches the same listener.
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

function listenError(error: unknown, host: string, port: number): Error {
  if (isErrnoException(error) && error.code === 'EADDRINUSE') {
    return new ServiceError(
      'api',
      `port ${port} on ${host} is already in use; stop the process using it or set API_PORT to a free port`,
      undefined,
      { cause: error },
    );
  }
  if (isErrnoException(error) && error.code === 'EACCES') {
    return new ServiceError(
      'api',
      `not permitted to listen on port ${port} on ${host}; set API_PORT to a port above 1023`,
      undefined,
      { cause: error },
    );
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new ServiceError('api', `cannot listen on ${host}:${port}: ${reason}`, undefined, { cause: error });
}

/**
 * Serves `app` over HTTP with @hono/node-server's adaptor and resolves once the port is bound.
 *
 * @throws ServiceError when the port cannot be bound; for EADDRINUSE the message names the port and API_PORT.
 * @example
 * const server = await startApiServer({ app, host: config.api.host, port: config.api.port, logger });
 * process.once('SIGTERM', () => void server.close());
 */
export function startApiServer(options: StartApiServerOptions): Promise<ApiServer> {
  const { app, host, port, logger } = options;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
  const server = createAdaptorServer({ fetch: app.fetch, hostname: host });
  // Without a createServer option the adaptor makes a plain node:http server; the guard lets TypeScript know it.
  if (!(server instanceof http.Server)) throw new TypeError('expected @hono/node-server to create an http.Server');

  // Responses still being produced when close() is called: they must not keep their connection alive afterwards.
  const inFlight = new Set<http.ServerResponse>();
  let closing: Promise<void> | undefined;
  // Prepended so it runs before the app's listener, which may answer synchronously.
  server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (closing) res.setHeader('connection', 'close');
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
  });

  return new Promise((resolve, reject) => {
    const onListenError = (error: unknown) => reject(listenError(error, host, port));
    server.once('error', onListenError);
    server.listen(port, host, () => {
      server.off('error', onListenError);
      server.on('error', (error) => logger.error({ err: error }, 'API server error'));
      const url = urlFor(host, (server.address() as AddressInfo).port);
      logger.info({ url }, 'API server listening');

      const close = (): Promise<void> => {
        closing ??= new Promise<void>((done) => {
          logger.info({ url, inFlight: inFlight.size }, 'API server closing');
          const force = setTimeout(() => {
            logger.warn({ shutdownTimeoutMs, inFlight: inFlight.size }, 'requests still running; closing connections');
            server.closeAllConnections();
          }, shutdownTimeoutMs);
          force.unref();
          for (const res of inFlight) {
            // Node closes the socket after a response that says so; one whose headers are out is ended when done.
            if (!res.headersSent) res.setHeader('connection', 'close');
            else res.once('finish', () => res.socket?.end());
          }
          // Stops accepting at once and closes idle keep-alive connections (Node >= 19); calls back when the last
          // connection has closed.
          server.close(() => {
            clearTimeout(force);
            logger.info({ url }, 'API server closed');
            done();
          });
        });
        return closing;
      };
      const finished = new Promise<void>((done, fail) => {
        server.once('close', () => (closing ? done() : fail(new Error(`the API server on ${url} stopped listening`))));
      });
      finished.catch(() => undefined);
      resolve({ url, close, finished });
    });
  });
}
