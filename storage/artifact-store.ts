import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline as pipelineWithCallback, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client } from 'minio';
import type { ServiceEndpoints } from '../core/config.js';
import { ConfigError, isErrnoException } from '../core/errors.js';
import {
  ArtifactIntegrityError,
  HashingStream,
  artifactKey,
  formatArtifactUri,
  parseArtifactUri,
  sha256Hex,
  sha256OfFile,
  type ArtifactLocation,
} from './content-hash.js';
import { isS3NotFound } from './s3-errors.js';
import { DomainError } from '../core/errors.js';

/**
 * A stored artifact, small and JSON-serializable so it can travel in Temporal payloads. `uri` is derived from
 * `sha256` alone: the same bytes have the same URI whatever their kind.
 */
export interface ArtifactRef {
  readonly uri: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly contentType: string;
  readonly kind: string;
}

/** An artifact URI, or any record that carries one (an `ArtifactRef`); a `sha256` given with it must agree. */
export type ArtifactAddress = string | { readonly uri: string; readonly sha256?: string };

export interface PutOptions {
  /** What the bytes are (`dataset`, `model.onnx`, `report`, ...): letters, digits and `._:/-`, at most 128. */
  readonly kind: string;
  /** Defaults to `application/octet-stream`. */
  readonly contentType?: string;
}

/** What the store knows about an object without reading it; nothing here is re-verified against the bytes. */
export interface ArtifactStat {
  readonly bytes: number;
  readonly contentType: string;
  /** The content address, from the object key. */
  readonly sha256: string;
  /** The kind recorded by the first upload of these bytes; `unknown` for objects written by other tools. */
  readonly kind: string;
  readonly lastModified: Date;
}

/** Content-addressed storage of datasets, models and reports. `S3ArtifactStore` is the implementation. */
export interface ArtifactStore {
  readonly bucket: string;
  ensureBucket(): Promise<void>;
  put(body: Buffer | Uint8Array | string, options: PutOptions): Promise<ArtifactRef>;
  putFile(filePath: string, options: PutOptions): Promise<ArtifactRef>;
  putStream(readable: Readable, options: PutOptions): Promise<ArtifactRef>;
  get(address: ArtifactAddress): Promise<Buffer>;
  getStream(address: ArtifactAddress): Promise<Readable>;
  stat(address: ArtifactAddress): Promise<ArtifactStat | undefined>;
  exists(address: ArtifactAddress): Promise<boolean>;
  presignedGetUrl(address: ArtifactAddress, expirySeconds?: number): Promise<string>;
  materialize(address: ArtifactAddress, cacheDir: string): Promise<string>;
}

/** Thrown when an artifact's object does not exist (or its bucket does not). */
export class ArtifactNotFoundError extends DomainError {
  override readonly name = 'ArtifactNotFoundError';
  constructor(
    readonly uri: string,
    options?: ErrorOptions,
  ) {
    super('not_found', `Artifact not found: ${uri}`, options);
  }
}

export interface S3ArtifactStoreOptions {
  /** Where streams are spooled while they are hashed; defaults to the OS temp folder. Needs room for one artifact. */
  readonly spoolDir?: string;
}

const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const KIND = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
// Metadata travels as HTTP headers: printable ASCII only.
const CONTENT_TYPE = /^[\x21-\x7e][\x20-\x7e]{0,254}$/;
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/**
 * `ArtifactStore` on any S3-compatible endpoint through the `minio` client (path-style addressing).
 *
 * Transient S3 failures are thrown as they come, for the caller's retry policy (Temporal activities retry); a missing
 * object is always told apart: `stat` gives `undefined`, reads throw `ArtifactNotFoundError`.
 */
export class S3ArtifactStore implements ArtifactStore {
  readonly #spoolDir: string;

  constructor(
    readonly client: Client,
    readonly bucket: string,
    readonly region: string,
    options: S3ArtifactStoreOptions = {},
  ) {
    this.#spoolDir = options.spoolDir ?? os.tmpdir();
  }

  /**
   * Builds a store from resolved service endpoints. http or https and the port come from the endpoint URL.
   *
   * @throws ConfigError when the endpoint is not a bare http(s) URL.
   * @example const store = S3ArtifactStore.fromConfig(endpoints.s3);
   */
  static fromConfig(config: ServiceEndpoints['s3'], options: S3ArtifactStoreOptions = {}): S3ArtifactStore {
    const client = new Client({
      ...parseEndpoint(config.endpoint),
      accessKey: config.accessKey,
      secretKey: config.secretKey,
      region: config.region,
      pathStyle: true,
    });
    return new S3ArtifactStore(client, config.bucket, config.region, options);
  }

  /** Creates the bucket when it is missing. Idempotent, and safe when several processes race to create it. */
  async ensureBucket(): Promise<void> {
    if (await this.client.bucketExists(this.bucket)) return;
    try {
      await this.client.makeBucket(this.bucket, this.region);
    } catch (error) {
      // Another process may have created it between the check and the create; only then is the error harmless.
      if (await this.client.bucketExists(this.bucket)) return;
      throw error;
    }
  }

  /**
   * Stores bytes under their sha256. Idempotent: when an object with the same size and recorded sha256 is already
   * there, nothing is uploaded. The returned ref carries the caller's kind and content type; the object's metadata
   * keeps those of its first upload.
   */
  async put(body: Buffer | Uint8Array | string, options: PutOptions): Promise<ArtifactRef> {
    const data =
      typeof body === 'string'
        ? Buffer.from(body, 'utf8')
        : Buffer.isBuffer(body)
          ? body
          : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    return this.#store(sha256Hex(data), data.length, options, () => data);
  }

  /**
   * Stores a local file under its sha256, streaming it (never held in memory). Idempotent like `put`. The file must
   * not change during the call.
   */
  async putFile(filePath: string, options: PutOptions): Promise<ArtifactRef> {
    checkPutOptions(options);
    const { sha256, bytes } = await sha256OfFile(filePath);
    return this.#store(sha256, bytes, options, () => createReadStream(filePath));
  }

  /**
   * Stores a stream under its sha256. The stream is hashed while it is spooled to a temporary file (the key is only
   * known at its end), then uploaded from that file; memory use does not grow with its size. Idempotent like `put`.
   * The temporary file is removed whether or not the call succeeds.
   */
  async putStream(readable: Readable, options: PutOptions): Promise<ArtifactRef> {
    checkPutOptions(options);
    const spool = await mkdtemp(path.join(this.#spoolDir, 'artifact-spool-'));
    try {
      const spoolFile = path.join(spool, 'data');
      const hashing = new HashingStream();
      await pipeline(readable, hashing, createWriteStream(spoolFile));
      return await this.#store(hashing.sha256(), hashing.bytes, options, () => createReadStream(spoolFile));
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  }

  /**
   * Reads a whole artifact into memory, verified: throws `ArtifactIntegrityError` when the bytes do not hash to the
   * address. For large artifacts use `getStream` or `materialize`.
   *
   * @throws ArtifactNotFoundError when the object does not exist.
   */
  async get(address: ArtifactAddress): Promise<Buffer> {
    const location = this.#locate(address);
    const source = await this.#getObject(location);
    const chunks: Buffer[] = [];
    for await (const chunk of source) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    const actual = sha256Hex(data);
    if (actual !== location.sha256) {
      throw new ArtifactIntegrityError(this.#uri(location), location.sha256, actual, data.length);
    }
    return data;
  }

  /**
   * Streams an artifact. Verified at the end: when the bytes do not hash to the address, the stream fails with
   * `ArtifactIntegrityError` instead of ending, so a consumer must not act on the data before the stream ends.
   *
   * @throws ArtifactNotFoundError when the object does not exist (before any data flows).
   */
  async getStream(address: ArtifactAddress): Promise<Readable> {
    const location = this.#locate(address);
    const source = await this.#getObject(location);
    const verifying = new HashingStream({ sha256: location.sha256, source: this.#uri(location) });
    // The callback form destroys every stream with the first error, so S3 read errors reach the consumer too.
    return pipelineWithCallback(source, verifying, () => undefined);
  }

  /** Describes an artifact from the object's headers; `undefined` when it does not exist (never a not-found error). */
  async stat(address: ArtifactAddress): Promise<ArtifactStat | undefined> {
    const location = this.#locate(address);
    try {
      const info = await this.client.statObject(location.bucket, location.key);
      const metadata = info.metaData as Record<string, unknown>;
      return {
        bytes: info.size,
        contentType: stringOr(metadata['content-type'], DEFAULT_CONTENT_TYPE),
        sha256: location.sha256,
        kind: stringOr(metadata.kind, 'unknown'),
        lastModified: info.lastModified,
      };
    } catch (error) {
      if (isS3NotFound(error)) return undefined;
      throw error;
    }
  }

  /** Whether the artifact's object exists; not verified. */
  async exists(address: ArtifactAddress): Promise<boolean> {
    return (await this.stat(address)) !== undefined;
  }

  /**
   * A URL that fetches the artifact with a plain HTTP GET until it expires. Signing is local: it does not check that
   * the object exists, and the fetched bytes are not verified.
   *
   * @param expirySeconds 1 to 604800 (7 days, the S3 maximum).
   */
  async presignedGetUrl(address: ArtifactAddress, expirySeconds = 3600): Promise<string> {
    if (!Number.isInteger(expirySeconds) || expirySeconds < 1 || expirySeconds > MAX_PRESIGN_SECONDS) {
      throw new RangeError(`expirySeconds must be an integer from 1 to ${MAX_PRESIGN_SECONDS}, got ${expirySeconds}`);
    }
    const location = this.#locate(address);
    return this.client.presignedGetObject(location.bucket, location.key, expirySeconds);
  }

  /**
   * Returns the path of a verified local copy of the artifact, `<cacheDir>/<sha256>`, downloading it only when the
   * cache has no valid copy. A cached copy is re-hashed before reuse, and a corrupted one is replaced. Downloads go
   * to a temporary name and are renamed into place only once verified, so the cache never holds a partial or wrong
   * file, and concurrent calls (processes included) are safe. Callers must treat the file as read-only.
   *
   * @throws ArtifactNotFoundError when the object does not exist.
   * @throws ArtifactIntegrityError when the stored object does not hash to its address.
   */
  async materialize(address: ArtifactAddress, cacheDir: string): Promise<string> {
    const location = this.#locate(address);
    const target = path.join(cacheDir, location.sha256);
    if (await isValidCopy(target, location.sha256)) return target;
    await mkdir(cacheDir, { recursive: true });
    // Same folder as the target: rename is atomic only within one file system.
    const partial = path.join(cacheDir, `.${location.sha256}.${randomUUID()}.partial`);
    try {
      const source = await this.#getObject(location);
      const verifying = new HashingStream({ sha256: location.sha256, source: this.#uri(location) });
      await pipeline(source, verifying, createWriteStream(partial, { flags: 'wx' }));
      await rename(partial, target);
    } finally {
      await rm(partial, { force: true });
    }
    return target;
  }

  async #store(
    sha256: string,
    bytes: number,
    options: PutOptions,
    body: () => Buffer | Readable,
  ): Promise<ArtifactRef> {
    const { kind, contentType } = checkPutOptions(options);
    const location: ArtifactLocation = { bucket: this.bucket, key: artifactKey(sha256), sha256 };
    const ref: ArtifactRef = { uri: this.#uri(location), sha256, bytes, contentType, kind };
    if (await this.#holds(location, bytes)) return ref;
    // minio adds the x-amz-meta- prefix to keys that are not standard headers.
    await this.client.putObject(this.bucket, location.key, body(), bytes, {
      'Content-Type': contentType,
      sha256,
      kind,
    });
    return ref;
  }

  /** Whether the object is already there as this store would write it; anything else is overwritten (repaired). */
  async #holds(location: ArtifactLocation, bytes: number): Promise<boolean> {
    try {
      const info = await this.client.statObject(location.bucket, location.key);
      return info.size === bytes && (info.metaData as Record<string, unknown>).sha256 === location.sha256;
    } catch (error) {
      if (isS3NotFound(error)) return false;
      throw error;
    }
  }

  async #getObject(location: ArtifactLocation): Promise<Readable> {
    try {
      return await this.client.getObject(location.bucket, location.key);
    } catch (error) {
      if (isS3NotFound(error)) throw new ArtifactNotFoundError(this.#uri(location), { cause: error });
      throw error;
    }
  }

  #locate(address: ArtifactAddress): ArtifactLocation {
    const uri = typeof address === 'string' ? address : address.uri;
    const location = parseArtifactUri(uri, this.bucket);
    if (typeof address !== 'string' && address.sha256 !== undefined && address.sha256 !== location.sha256) {
      throw new TypeError(`artifact ref is inconsistent: sha256 ${address.sha256} but URI ${uri}`);
    }
    return location;
  }

  #uri(location: ArtifactLocation): string {
    return formatArtifactUri(location.bucket, location.sha256);
  }
}

/** minio wants host, port and TLS apart; the platform configures one URL. */
function parseEndpoint(endpoint: string): { endPoint: string; port: number; useSSL: boolean } {
  const invalid = (problem: string) =>
    new ConfigError(`S3_ENDPOINT=${JSON.stringify(endpoint)}: ${problem}`, [{ variable: 'S3_ENDPOINT', problem }]);
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw invalid('expected a URL such as http://127.0.0.1:9000');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('expected an http:// or https:// URL');
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw invalid('expected scheme, host and port only (no path, query or credentials)');
  }
  const useSSL = url.protocol === 'https:';
  return {
    endPoint: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port ? Number(url.port) : useSSL ? 443 : 80,
    useSSL,
  };
}

function checkPutOptions(options: PutOptions): { kind: string; contentType: string } {
  const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE;
  if (!KIND.test(options.kind)) {
    throw new TypeError(
      `artifact kind must be 1-128 of letters, digits and ._:/-, got ${JSON.stringify(options.kind)}`,
    );
  }
  if (!CONTENT_TYPE.test(contentType)) {
    throw new TypeError(`artifact contentType must be printable ASCII, got ${JSON.stringify(contentType)}`);
  }
  return { kind: options.kind, contentType };
}

async function isValidCopy(filePath: string, sha256: string): Promise<boolean> {
  try {
    return (await sha256OfFile(filePath)).sha256 === sha256;
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOENT') return false;
    throw error;
  }
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}
