/**
 * The monitoring alert webhook's rules, apart from delivering it (activities/monitoring-actions.ts): what the body
 * says, how it is signed, and which targets are refused.
 *
 * Signature: `x-mlops-signature: sha256=<hex HMAC-SHA256 of the raw body bytes>` under the shared secret named by the
 * definition's `alert.secretEnv` (read from the worker's environment at delivery time, never stored). A receiver
 * recomputes the HMAC over the body exactly as received and compares in constant time.
 *
 * Targets: the URL comes from a pipeline definition, saved by a caller with the `trigger` scope, and is otherwise
 * trusted as part of that definition. What is refused is what would turn the webhook into a reader of the worker's
 * cloud credentials: link-local addresses (169.254.0.0/16, fe80::/10, the cloud instance metadata services at
 * 169.254.169.254 and fd00:ec2::254), including such addresses a host name resolves to at delivery time. The check
 * is made on the addresses the request connects to ({@link postAlert} resolves through {@link guardedLookup}), so a
 * name that resolves to a public address when checked and to the metadata service when connecting (DNS rebinding)
 * is refused too.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { DomainError } from '../core/errors.js';
import type { MonitoringBreach, WindowSummary } from './types.js';

/** The header that carries the body's signature. */
export const SIGNATURE_HEADER = 'x-mlops-signature';

/** `sha256=<hex HMAC-SHA256 of body under secret>`, the value of {@link SIGNATURE_HEADER}. */
export function signAlertBody(body: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Whether `signature` is the signature of `body` under `secret` (constant-time): what a receiver checks. */
export function verifyAlertSignature(body: string | Uint8Array, secret: string, signature: string): boolean {
  const expected = Buffer.from(signAlertBody(body, secret));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** The JSON body of an alert: which deployment and window breached what, and where to read the whole report. */
export interface AlertBody {
  readonly kind: 'monitoring_breach';
  readonly deployment: string;
  readonly model: string;
  readonly version: number;
  readonly window: { readonly id: string; readonly start: string; readonly end: string };
  readonly rows: number;
  readonly labelledRows: number;
  readonly breaches: readonly MonitoringBreach[];
  readonly live?: Readonly<Record<string, number>>;
  readonly estimated?: Readonly<Record<string, number>>;
  /** The API path of the window's report (`GET` it with a `read` key). */
  readonly summaryPath: string;
}

/** The API path of one window's report. */
export function windowPath(deployment: string, windowId: string): string {
  return `/v1/deployments/${encodeURIComponent(deployment)}/monitoring/${windowId}`;
}

export function alertBodyOf(summary: WindowSummary): AlertBody {
  return {
    kind: 'monitoring_breach',
    deployment: summary.deployment,
    model: summary.model,
    version: summary.version,
    window: { id: summary.windowId, start: summary.windowStart, end: summary.windowEnd },
    rows: summary.rows,
    labelledRows: summary.labelledRows,
    breaches: summary.breaches,
    ...(summary.live ? { live: summary.live } : {}),
    ...(summary.estimated ? { estimated: summary.estimated } : {}),
    summaryPath: windowPath(summary.deployment, summary.windowId),
  };
}

/** Why an address is refused as an alert target, or undefined when it is not. */
export function refusedAddress(address: string): string | undefined {
  const bare = address.replace(/^\[|\]$/g, '');
  const kind = net.isIP(bare);
  if (kind === 4) return ipv4Refusal(bare);
  if (kind === 6) {
    const words = expandIpv6(bare.toLowerCase());
    if (!words) return undefined;
    // An IPv4 address written as IPv6 (::ffff:169.254.169.254, or the older ::169.254.169.254) is that address.
    if (words.slice(0, 5).every((w) => w === 0) && (words[5] === 0xffff || words[5] === 0)) {
      const refusal = ipv4Refusal(`${words[6]! >> 8}.${words[6]! & 255}.${words[7]! >> 8}.${words[7]! & 255}`);
      if (refusal) return refusal;
    }
    if ((words[0]! & 0xffc0) === 0xfe80) return `${address} is a link-local address`;
    const metadata = [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254];
    if (words.every((w, i) => w === metadata[i])) return `${address} is the cloud instance metadata service`;
  }
  return undefined;
}

function ipv4Refusal(address: string): string | undefined {
  const [a, b] = address.split('.').map(Number);
  if (a === 169 && b === 254) {
    return address === '169.254.169.254'
      ? `${address} is the cloud instance metadata service`
      : `${address} is a link-local address`;
  }
  return undefined;
}

/** The eight 16-bit words of an IPv6 address (without a zone), or undefined when it does not parse. */
function expandIpv6(address: string): number[] | undefined {
  let text = address.split('%')[0]!;
  // A trailing dotted quad is the last two words.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((w) => Number.parseInt(w, 16)));
  const front = parse(head);
  const back = tail === undefined ? [] : parse(tail);
  const missing = 8 - front.length - back.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  const words = [...front, ...Array<number>(missing).fill(0), ...back];
  return words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}

/** Resolves a host name to its addresses (dns.promises.lookup with `all: true`, in production). */
export type HostLookup = (host: string) => Promise<readonly { readonly address: string }[]>;

/**
 * Why an alert URL is refused, or undefined when it may be delivered to: not http(s), or its host is (or resolves
 * to) a link-local or metadata address. A host that does not resolve is not refused here: the delivery fails and is
 * retried like any other unreachable target.
 */
export async function alertTargetRefusal(url: string, lookup: HostLookup): Promise<string | undefined> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `${url} is not a URL`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `${url} is not an http(s) URL`;
  const host = parsed.hostname;
  const literal = refusedAddress(host);
  if (literal) return literal;
  if (net.isIP(host.replace(/^\[|\]$/g, ''))) return undefined;
  let addresses: readonly { readonly address: string }[];
  try {
    addresses = await lookup(host);
  } catch {
    return undefined;
  }
  for (const { address } of addresses) {
    const refusal = refusedAddress(address);
    if (refusal) return `${host} resolves to ${refusal}`;
  }
  return undefined;
}

/** A connection refused by {@link guardedLookup}: its host resolved to a link-local or metadata address. */
export class AlertTargetRefusedError extends DomainError {
  override readonly name = 'AlertTargetRefusedError';
  constructor(message: string) {
    super('forbidden', message, { code: 'alert_target_refused' });
  }
}

/**
 * A `lookup` for node:net (and so node:http and node:https) that resolves through `lookup` and fails with an
 * {@link AlertTargetRefusedError} when any address of the host is refused: the addresses checked are the ones the
 * socket then connects to, with no second resolution in between.
 */
export function guardedLookup(lookup: HostLookup): net.LookupFunction {
  return (hostname, options, callback) => {
    const fail = (error: NodeJS.ErrnoException) => callback(error, options.all ? [] : '', undefined);
    lookup(hostname).then(
      (resolved) => {
        for (const { address } of resolved) {
          const refusal = refusedAddress(address);
          if (refusal) return fail(new AlertTargetRefusedError(`${hostname} resolves to ${refusal}`));
        }
        const wanted = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
        const addresses: dns.LookupAddress[] = resolved
          .map(({ address }) => ({ address, family: net.isIP(address) }))
          .filter((a) => a.family !== 0 && (!wanted || a.family === wanted));
        const [first] = addresses;
        if (!first) {
          const error: NodeJS.ErrnoException = new Error(`${hostname} has no address`);
          error.code = 'ENOTFOUND';
          return fail(error);
        }
        if (options.all) callback(null, addresses);
        else callback(null, first.address, first.family);
      },
      (error: unknown) => fail(error instanceof Error ? error : new Error(String(error))),
    );
  };
}

export interface PostAlertOptions {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Bounds the whole request, connection included. */
  readonly timeoutMs: number;
  /** Resolves the host; every address is checked before the socket connects. */
  readonly lookup: HostLookup;
}

/**
 * POSTs `body` to an http(s) URL and answers the response's status (its body is discarded). Redirects are not
 * followed: a 3xx is an answer like any other. The host is resolved once, through {@link guardedLookup}, so the
 * checked address is the connected one; a refused address rejects with an {@link AlertTargetRefusedError}.
 */
export function postAlert(url: string, options: PostAlertOptions): Promise<{ status: number }> {
  const target = new URL(url);
  const transport = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : undefined;
  if (!transport) return Promise.reject(new Error(`${url} is not an http(s) URL`));
  const payload = Buffer.from(options.body);
  return new Promise((resolve, reject) => {
    const request = transport.request(
      target,
      {
        method: 'POST',
        headers: { ...options.headers, 'content-length': String(payload.length) },
        lookup: guardedLookup(options.lookup),
        // One request per connection: no pooled socket skips the lookup (or outlives the delivery).
        agent: false,
        signal: AbortSignal.timeout(options.timeoutMs),
      },
      (response) => {
        response.on('error', () => undefined);
        response.resume();
        resolve({ status: response.statusCode ?? 0 });
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}
