import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Client } from 'minio';
import { isErrnoException } from '../core/errors.js';
import { sha256Hex } from './content-hash.js';
import { isS3NotFound } from './s3-errors.js';
import { DomainError } from '../core/errors.js';

/**
 * Reading arbitrary objects of any bucket of the configured S3 endpoint, for extraction. Unlike the artifact store
 * (which only knows its own content-addressed keys), the objects here are written by other tools, so their identity
 * is what S3 says about them: key, size and ETag.
 */

/** One object as listed; `etag` without quotes. */
export interface ObjectInfo {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly lastModified: Date;
}

/** Where a downloaded object lies, and whether this call had to download it (false: a cached copy was reused). */
export interface DownloadResult {
  readonly path: string;
  readonly downloaded: boolean;
  readonly bytes: number;
}

export interface DownloadOptions {
  /** Appended to the cache file's name, so readers that look at extensions (DuckDB: `.csv.gz`) still can. */
  readonly extension?: string;
  readonly signal?: AbortSignal;
}

/** Lists and downloads objects of any bucket. `S3ObjectSource` is the implementation. */
/** How much of a prefix {@link ObjectSource.list} lists. */
export interface ListOptions {
  readonly maxKeys?: number;
  /** Only keys after this one (in UTF-8 binary order, S3's); optional for sources that cannot, which list all. */
  readonly startAfter?: string;
}

export interface ObjectSource {
  /**
   * Every object whose key starts with `prefix`, recursively, sorted by key; "folder" markers (keys ending in `/`)
   * are left out. With `maxKeys`, listing stops after that many objects (in the store's order); with `startAfter`,
   * it starts after that key (S3's `StartAfter`: UTF-8 binary order), so a long prefix can be listed page by page.
   *
   * @throws ObjectNotFoundError when the bucket does not exist.
   */
  list(bucket: string, prefix: string, options?: ListOptions): Promise<ObjectInfo[]>;
  /** One object's description; `undefined` when it (or its bucket) does not exist. */
  stat(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  /**
   * A verified local copy of exactly the listed version of `object`, in `cacheDir` (see {@link objectCachePath}),
   * downloaded only when the cache has none.
   *
   * @throws ObjectNotFoundError when the object is gone.
   * @throws ObjectChangedError when the stored object is no longer the listed one (or arrived damaged); retrying
   *   with a fresh listing is the remedy.
   */
  download(object: ObjectInfo, cacheDir: string, options?: DownloadOptions): Promise<DownloadResult>;
  /**
   * Bytes [offset, offset + length) of exactly the listed version of `object` (fewer at its end), for probing a
   * source without downloading it. Optional: sources without it are probed by a full download.
   *
   * @throws ObjectNotFoundError when the object is gone; ObjectChangedError when it is no longer the listed one.
   */
  readRange?(object: ObjectInfo, offset: number, length: number): Promise<Buffer>;
}

/** Thrown when a bucket or object to read does not exist. */
export class ObjectNotFoundError extends DomainError {
  override readonly name = 'ObjectNotFoundError';
  constructor(
    readonly uri: string,
    options?: ErrorOptions,
  ) {
    super('not_found', `Not found: ${uri}`, options);
  }
}

/** Thrown when an object's bytes are not those of the version that was listed (overwritten meanwhile, or damaged). */
export class ObjectChangedError extends DomainError {
  override readonly name = 'ObjectChangedError';
  constructor(
    readonly uri: string,
    problem: string,
  ) {
    // Reading again reads the new version.
    super('not_found', `${uri} changed while it was read: ${problem}`, { retryable: true });
  }
}

// A single-part upload's ETag is the MD5 of its bytes; multipart ETags ("<md5>-<parts>") depend on the part sizes.
const PLAIN_MD5_ETAG = /^[0-9a-f]{32}$/;

/** `s3://bucket/key`, for messages and records. */
export function objectUri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/**
 * The cache file of an object: named by the sha256 of its ETag and size, which identify its content, so a copy is
 * reused whatever key or bucket the same bytes are read under, and a changed object (new ETag) never hits a stale
 * copy. The extension is kept for readers that infer compression from it.
 */
export function objectCachePath(object: Pick<ObjectInfo, 'etag' | 'size'>, cacheDir: string, extension = ''): string {
  if (!/^[A-Za-z0-9.]*$/.test(extension)) throw new TypeError(`unsafe cache extension ${JSON.stringify(extension)}`);
  return path.join(cacheDir, `${sha256Hex(`etag:${object.etag}\nsize:${object.size}`)}${extension}`);
}

/**
 * `ObjectSource` over the `minio` client (any S3-compatible store). Transient S3 errors are thrown as they come, for
 * the caller's retry policy.
 */
export class S3ObjectSource implements ObjectSource {
  constructor(readonly client: Client) {}

  async list(bucket: string, prefix: string, options: ListOptions = {}): Promise<ObjectInfo[]> {
    const objects: ObjectInfo[] = [];
    const maxKeys = options.maxKeys ?? Number.POSITIVE_INFINITY;
    try {
      for await (const item of this.client.listObjectsV2(bucket, prefix, true, options.startAfter)) {
        const entry = item as { name?: string; size?: number; etag?: string; lastModified?: Date };
        if (entry.name === undefined || entry.name.endsWith('/')) continue;
        // Leaving the loop ends the listing: no further page is requested.
        if (objects.length >= maxKeys) break;
        objects.push({
          bucket,
          key: entry.name,
          size: entry.size ?? 0,
          etag: normalizeEtag(entry.etag ?? ''),
          lastModified: entry.lastModified ?? new Date(0),
        });
      }
    } catch (error) {
      if (isS3NotFound(error)) throw new ObjectNotFoundError(`s3://${bucket}`, { cause: error });
      throw error;
    }
    // S3 lists in UTF-8 binary order already; sorting makes it independent of the store's implementation.
    return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async stat(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await this.client.statObject(bucket, key);
      return { bucket, key, size: info.size, etag: normalizeEtag(info.etag), lastModified: info.lastModified };
    } catch (error) {
      if (isS3NotFound(error)) return undefined;
      throw error;
    }
  }

  async readRange(object: ObjectInfo, offset: number, length: number): Promise<Buffer> {
    const uri = objectUri(object.bucket, object.key);
    if (length <= 0 || offset >= object.size) return Buffer.alloc(0);
    let response: IncomingMessage;
    try {
      response = (await this.client.getPartialObject(object.bucket, object.key, offset, length)) as IncomingMessage;
    } catch (error) {
      if (isS3NotFound(error)) throw new ObjectNotFoundError(uri, { cause: error });
      throw error;
    }
    const served = normalizeEtag(String(response.headers?.etag ?? object.etag));
    if (served !== object.etag) {
      response.destroy();
      throw new ObjectChangedError(uri, `listed with ETag ${object.etag}, now ${served}`);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * Downloads to a temporary name next to the target and renames it into place only once verified, so the cache
   * never holds a partial or wrong file and concurrent callers (processes included) are safe. Verified: the response
   * must carry the listed ETag (the object was not overwritten since it was listed), the size must match, and a
   * plain-MD5 ETag must equal the MD5 of the bytes. A cached copy is reused when its size matches: it was verified
   * before it was renamed into place. Callers must treat the file as read-only.
   */
  async download(object: ObjectInfo, cacheDir: string, options: DownloadOptions = {}): Promise<DownloadResult> {
    const target = objectCachePath(object, cacheDir, options.extension);
    if ((await fileSize(target)) === object.size) return { path: target, downloaded: false, bytes: object.size };
    const uri = objectUri(object.bucket, object.key);
    await mkdir(cacheDir, { recursive: true });
    const partial = path.join(cacheDir, `.${path.basename(target)}.${randomUUID()}.partial`);
    try {
      let response: IncomingMessage;
      try {
        response = (await this.client.getObject(object.bucket, object.key)) as IncomingMessage;
      } catch (error) {
        if (isS3NotFound(error)) throw new ObjectNotFoundError(uri, { cause: error });
        throw error;
      }
      const served = normalizeEtag(String(response.headers?.etag ?? object.etag));
      if (served !== object.etag) {
        response.destroy();
        throw new ObjectChangedError(uri, `listed with ETag ${object.etag}, now ${served}`);
      }
      const md5 = new Md5Stream();
      await pipeline(response, md5, createWriteStream(partial, { flags: 'wx' }), { signal: options.signal });
      if (md5.bytes !== object.size) {
        throw new ObjectChangedError(uri, `listed with ${object.size} bytes, ${md5.bytes} arrived`);
      }
      if (PLAIN_MD5_ETAG.test(object.etag) && md5.digest !== object.etag) {
        throw new ObjectChangedError(uri, `the bytes have MD5 ${md5.digest}, the ETag says ${object.etag}`);
      }
      await rename(partial, target);
    } finally {
      await rm(partial, { force: true });
    }
    return { path: target, downloaded: true, bytes: object.size };
  }
}

/** Counts and MD5-hashes what flows through, so the download is verified in the same pass that writes it. */
class Md5Stream extends Transform {
  readonly #hash = createHash('md5');
  bytes = 0;
  digest = '';

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.digest = this.#hash.digest('hex');
    callback();
  }
}

function normalizeEtag(etag: string): string {
  return etag.replace(/^"|"$/g, '').replace(/^&quot;|&quot;$/g, '');
}

async function fileSize(filePath: string): Promise<number | undefined> {
  try {
    return (await stat(filePath)).size;
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOENT') return undefined;
    throw error;
  }
}
