/**
 * Recognises the errors that mean "a service the platform depends on is down or unreachable right now" (PostgreSQL,
 * Temporal, S3), as opposed to a bug or a bad request. The API answers them with 503 and `Retry-After` instead of a
 * 500 (server/error-handler.ts); this is the one table of what counts as an outage. Duck-typed on codes and shapes,
 * so it needs none of the clients' modules.
 */

export type OutageService = 'PostgreSQL' | 'Temporal' | 'S3' | 'a dependency';

export interface Outage {
  /** Which service, when the error says; `a dependency` when only the socket error is known. */
  readonly service: OutageService;
  /** The code or message that classified it, for logs (never for the caller: it may name hosts and ports). */
  readonly reason: string;
}

/** Socket-level errors: the peer is down, restarting, or unreachable. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * SQLSTATEs of a server that is going away or not taking connections: class 08 (connection exception), 57P01
 * admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up, shutting down, recovering), 53300
 * too_many_connections.
 */
function isOutageSqlState(code: string): boolean {
  return /^08[0-9A-Z]{3}$/.test(code) || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300';
}

/** node-postgres' own messages for a lost or impossible connection (they carry no code). */
const PG_MESSAGES = [
  /timeout exceeded when trying to connect/i,
  /Connection terminated/i,
  /Client has encountered a connection error and is not queryable/i,
  /Connection terminated due to connection timeout/i,
];

/** gRPC status codes of a Temporal frontend that cannot be reached: 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED. */
const GRPC_OUTAGE_CODES = new Set([14, 4]);

/** S3 error codes of a server that is up but not serving (MinIO starting, throttling, a 503 from a proxy). */
const S3_OUTAGE_CODES = new Set(['ServiceUnavailable', 'SlowDown', 'XMinioServerNotInitialized', 'InternalError']);

function* chain(error: unknown, depth = 0): Generator<unknown> {
  if (error === null || error === undefined || depth > 8) return;
  yield error;
  if (typeof error !== 'object') return;
  // pg reports a host that resolves to several addresses as an AggregateError of one failure each.
  const errors = (error as { errors?: unknown }).errors;
  if (Array.isArray(errors)) for (const inner of errors) yield* chain(inner, depth + 1);
  yield* chain((error as { cause?: unknown }).cause, depth + 1);
}

/** Which service an error chain came through, from the wrappers' names and messages. */
function serviceOf(error: unknown): OutageService | undefined {
  for (const e of chain(error)) {
    if (!(e instanceof Error)) continue;
    const name = e.name;
    if (name === 'DrizzleQueryError' || e.message.startsWith('Failed query:')) return 'PostgreSQL';
    if (name === 'ServiceError' && /temporal|grpc|workflow/i.test(`${e.message} ${String(e.stack)}`)) return 'Temporal';
    if (name === 'S3Error' || (e as { amzRequestid?: unknown }).amzRequestid !== undefined) return 'S3';
  }
  return undefined;
}

/**
 * The outage an error means, or undefined when it is anything else (a bug, a constraint violation, a bad request).
 * Looks through `cause` chains and AggregateErrors.
 *
 * @example
 * outageOf(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
 * // → { service: 'a dependency', reason: 'ECONNREFUSED' }
 */
export function outageOf(error: unknown): Outage | undefined {
  for (const e of chain(error)) {
    if (typeof e !== 'object' || e === null) continue;
    const code = (e as { code?: unknown }).code;
    const message = e instanceof Error ? e.message : '';
    if (typeof code === 'string') {
      if (SOCKET_CODES.has(code)) return { service: serviceOf(error) ?? 'a dependency', reason: code };
      if (/^[0-9A-Z]{5}$/.test(code) && isOutageSqlState(code)) return { service: 'PostgreSQL', reason: code };
      if (S3_OUTAGE_CODES.has(code) && (e as { amzRequestid?: unknown }).amzRequestid !== undefined) {
        return { service: 'S3', reason: code };
      }
      if (S3_OUTAGE_CODES.has(code) && (e as Error).name === 'S3Error') return { service: 'S3', reason: code };
    }
    // @grpc/grpc-js errors (and Temporal's ServiceError around them) carry a numeric status code and metadata.
    if (typeof code === 'number' && GRPC_OUTAGE_CODES.has(code) && 'metadata' in e) {
      return { service: 'Temporal', reason: code === 14 ? 'UNAVAILABLE' : 'DEADLINE_EXCEEDED' };
    }
    if (e instanceof Error && e.name === 'ServiceError' && /Failed to connect before the deadline/i.test(message)) {
      return { service: 'Temporal', reason: 'connect deadline' };
    }
    if (PG_MESSAGES.some((pattern) => pattern.test(message))) return { service: 'PostgreSQL', reason: message };
  }
  return undefined;
}
