import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DomainError } from '../core/errors.js';

/**
 * The content-addressing scheme of the artifact store: how bytes are hashed, where an object with a given hash lives,
 * and how its `s3://` URI is written and parsed. Changing any of it orphans every stored artifact.
 */

/** Object keys start with this prefix; the hash algorithm is part of the path so another one can coexist later. */
export const ARTIFACT_KEY_PREFIX = 'artifacts/sha256/';

const SHA256_HEX = /^[0-9a-f]{64}$/;
// Same rule as S3_BUCKET in core/config.ts, so every bucket the platform can be configured with also parses here.
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const ARTIFACT_URI = /^s3:\/\/([^/]+)\/artifacts\/sha256\/([^/]*)\/([^/]*)$/;

/** Thrown when a string is not an artifact URI of this store's layout, or names another bucket than expected. */
export class InvalidArtifactUriError extends DomainError {
  override readonly name = 'InvalidArtifactUriError';
  constructor(
    readonly uri: string,
    reason: string,
  ) {
    super('invalid', `Invalid artifact URI ${JSON.stringify(uri)}: ${reason}`);
  }
}

/** Thrown when bytes read back do not hash to the sha256 their address promises (tampered or corrupted data). */
export class ArtifactIntegrityError extends DomainError {
  override readonly name = 'ArtifactIntegrityError';
  constructor(
    /** Where the bad bytes came from: an artifact URI or a local path. */
    readonly source: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
    readonly bytes: number,
  ) {
    super(
      'integrity',
      `Integrity check failed for ${source}: expected sha256 ${expectedSha256}, ` +
        `got ${actualSha256} over ${bytes} bytes; the stored data is corrupted or was overwritten`,
    );
  }
}

/** Where an artifact lives, as parsed from its URI. */
export interface ArtifactLocation {
  readonly bucket: string;
  readonly key: string;
  readonly sha256: string;
}

/** Whether `value` is a lowercase hex sha256 digest (64 characters). */
export function isSha256Hex(value: string): boolean {
  return SHA256_HEX.test(value);
}

/** The lowercase hex sha256 of `data`; strings are hashed as their UTF-8 bytes. */
export function sha256Hex(data: Buffer | Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The object key of the artifact with this sha256: `artifacts/sha256/<first 2 hex>/<sha256>`. The two-character
 * shard keeps listings of one prefix small on stores that page by prefix.
 *
 * @throws TypeError when `sha256` is not a lowercase hex digest.
 */
export function artifactKey(sha256: string): string {
  if (!isSha256Hex(sha256)) throw new TypeError(`expected a lowercase hex sha256, got ${JSON.stringify(sha256)}`);
  return `${ARTIFACT_KEY_PREFIX}${sha256.slice(0, 2)}/${sha256}`;
}

/**
 * The URI of the artifact with this sha256 in `bucket`; `parseArtifactUri` inverts it exactly.
 *
 * @example formatArtifactUri('mlops-artifacts', sha) // 's3://mlops-artifacts/artifacts/sha256/ba/ba7816bf...'
 */
export function formatArtifactUri(bucket: string, sha256: string): string {
  if (!BUCKET_NAME.test(bucket)) throw new TypeError(`expected a valid S3 bucket name, got ${JSON.stringify(bucket)}`);
  return `s3://${bucket}/${artifactKey(sha256)}`;
}

/**
 * Parses an artifact URI into bucket, key and sha256. This is the only place URIs are parsed.
 *
 * @param expectedBucket when given, a URI for any other bucket is rejected.
 * @throws InvalidArtifactUriError naming the URI and what is wrong with it.
 */
export function parseArtifactUri(uri: string, expectedBucket?: string): ArtifactLocation {
  const match = ARTIFACT_URI.exec(uri);
  if (!match) {
    throw new InvalidArtifactUriError(uri, 'expected s3://<bucket>/artifacts/sha256/<first 2 hex>/<sha256>');
  }
  const [, bucket = '', shard = '', sha256 = ''] = match;
  if (!BUCKET_NAME.test(bucket))
    throw new InvalidArtifactUriError(uri, `${JSON.stringify(bucket)} is not a bucket name`);
  if (!isSha256Hex(sha256)) throw new InvalidArtifactUriError(uri, 'the last segment must be a lowercase hex sha256');
  if (shard !== sha256.slice(0, 2)) {
    throw new InvalidArtifactUriError(uri, `the shard segment must be ${JSON.stringify(sha256.slice(0, 2))}`);
  }
  if (expectedBucket !== undefined && bucket !== expectedBucket) {
    throw new InvalidArtifactUriError(
      uri,
      `it belongs to bucket ${JSON.stringify(bucket)}, this store uses ${JSON.stringify(expectedBucket)}`,
    );
  }
  return { bucket, key: artifactKey(sha256), sha256 };
}

/** What a `HashingStream` checks at the end of the data, and how it names the data in the error. */
export interface ExpectedContent {
  readonly sha256: string;
  /** An artifact URI or a local path, for the error message. */
  readonly source: string;
}

/**
 * A pass-through stream that hashes and counts what flows through it, so one read of the data both moves and
 * verifies it. With `expected`, the stream fails with `ArtifactIntegrityError` at its end when the hash differs, so a
 * consumer never sees a clean end of bad data. `sha256()` is valid once the stream has finished.
 */
export class HashingStream extends Transform {
  readonly #hash: Hash = createHash('sha256');
  readonly #expected: ExpectedContent | undefined;
  #bytes = 0;
  #digest: string | undefined;

  constructor(expected?: ExpectedContent) {
    super();
    this.#expected = expected;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#digest = this.#hash.digest('hex');
    const expected = this.#expected;
    if (expected && expected.sha256 !== this.#digest) {
      callback(new ArtifactIntegrityError(expected.source, expected.sha256, this.#digest, this.#bytes));
      return;
    }
    callback();
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** @throws Error when called before the stream has finished. */
  sha256(): string {
    if (this.#digest === undefined) throw new Error('HashingStream.sha256() called before the stream finished');
    return this.#digest;
  }
}

/**
 * Hashes a stream to its end without keeping it in memory. Agrees with `sha256Hex` on the same bytes.
 *
 * @returns the hex sha256 and the number of bytes read.
 */
export async function sha256OfStream(readable: Readable): Promise<{ sha256: string; bytes: number }> {
  const hashing = new HashingStream();
  const discard = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  await pipeline(readable, hashing, discard);
  return { sha256: hashing.sha256(), bytes: hashing.bytes };
}

/** Hashes a local file by streaming it. */
export function sha256OfFile(filePath: string): Promise<{ sha256: string; bytes: number }> {
  return sha256OfStream(createReadStream(filePath));
}
