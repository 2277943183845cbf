/**
 * The serving-log warehouse: Parquet files of exported prediction-log partitions in S3, one folder per UTC day,
 * `<prefix>date=YYYY-MM-DD/part-<minId>-<maxId>.parquet` (Hive-style, so DuckDB, Spark or pandas read the folder as a
 * table partitioned by `date`). Unlike the artifact store, keys name what the file holds rather than its hash: a
 * retried export of the same rows writes the same key.
 */
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import type { Client } from 'minio';
import type { Day } from '../core/days.js';
import { sha256OfFile } from './content-hash.js';
import { objectUri } from './object-source.js';
import { isS3NotFound } from './s3-errors.js';

/** Where the warehouse lies by default: under the artifact bucket. */
export const DEFAULT_WAREHOUSE_PREFIX = 'warehouse/prediction_logs/';

/** What an uploaded file must be found to be in S3 before the rows it holds may be dropped from Postgres. */
export interface WarehouseFile {
  readonly sha256: string;
  readonly bytes: number;
  readonly rows: number;
}

/** Thrown when an uploaded file is not found in S3 as it was written (missing, another size or hash). */
export class WarehouseVerificationError extends DomainError {
  override readonly name = 'WarehouseVerificationError';
  constructor(message: string, options?: DomainErrorOptions) {
    // Unavailable, not integrity: the next attempt uploads the file again, which is the remedy.
    super('unavailable', message, { code: 'warehouse_verification_failed', ...options });
  }
}

export class PredictionLogWarehouse {
  readonly prefix: string;

  /**
   * @param client the S3 client (the artifact store's).
   * @param bucket the bucket (default deployment: the artifact bucket).
   * @param prefix ends with `/`; default {@link DEFAULT_WAREHOUSE_PREFIX}.
   */
  constructor(
    readonly client: Client,
    readonly bucket: string,
    prefix: string = DEFAULT_WAREHOUSE_PREFIX,
  ) {
    this.prefix = prefix.endsWith('/') ? prefix : `${prefix}/`;
  }

  /** The key of a day's export holding rows `minId..maxId` (none: `part-empty`). */
  keyOf(day: Day, ids: { readonly minId: number | null; readonly maxId: number | null }): string {
    const part = ids.minId === null || ids.maxId === null ? 'empty' : `${ids.minId}-${ids.maxId}`;
    return `${this.prefix}date=${day}/part-${part}.parquet`;
  }

  /** `s3://bucket/key`. */
  uriOf(key: string): string {
    return objectUri(this.bucket, key);
  }

  /** The key of one of this warehouse's URIs. */
  keyOfUri(uri: string): string {
    const start = `s3://${this.bucket}/`;
    if (!uri.startsWith(start)) throw new Error(`not in bucket ${this.bucket}: ${uri}`);
    return uri.slice(start.length);
  }

  /**
   * Uploads `filePath` to `key` (overwriting: the same key holds the same rows), then checks what S3 says it stored:
   * its size, and the hash and row count in its metadata. Only a quick check (the metadata is what this upload wrote,
   * not a reading of the bytes): {@link verifyContent} reads the bytes back before anything relies on them.
   *
   * @throws WarehouseVerificationError when S3 does not hold the file as written.
   */
  async upload(key: string, filePath: string, file: WarehouseFile): Promise<void> {
    // minio adds the x-amz-meta- prefix to keys that are not standard headers.
    await this.client.fPutObject(this.bucket, key, filePath, {
      'Content-Type': 'application/vnd.apache.parquet',
      sha256: file.sha256,
      rows: String(file.rows),
    });
    const stored = await this.stat(key);
    if (!stored || stored.bytes !== file.bytes || stored.sha256 !== file.sha256 || stored.rows !== file.rows) {
      throw new WarehouseVerificationError(
        `s3://${this.bucket}/${key}: expected ${file.bytes} bytes, sha256 ${file.sha256}, ${file.rows} rows; ` +
          `found ${stored ? `${stored.bytes} bytes, sha256 ${stored.sha256}, ${stored.rows} rows` : 'nothing'}`,
      );
    }
  }

  /**
   * Downloads `key` to `filePath` and checks the bytes S3 returns: their size and sha256 must be the file's. What the
   * export relies on before it drops rows from Postgres (with the rows of the downloaded file counted by its caller).
   *
   * @throws WarehouseVerificationError when S3 returns other bytes, or nothing.
   */
  async verifyContent(key: string, filePath: string, file: Pick<WarehouseFile, 'sha256' | 'bytes'>): Promise<void> {
    try {
      await this.download(key, filePath);
    } catch (error) {
      if (!isS3NotFound(error)) throw error;
      throw new WarehouseVerificationError(`s3://${this.bucket}/${key}: expected ${file.bytes} bytes, found nothing`);
    }
    const found = await sha256OfFile(filePath);
    if (found.bytes !== file.bytes || found.sha256 !== file.sha256) {
      throw new WarehouseVerificationError(
        `s3://${this.bucket}/${key}: expected ${file.bytes} bytes with sha256 ${file.sha256}; ` +
          `S3 returned ${found.bytes} bytes with sha256 ${found.sha256}`,
      );
    }
  }

  /** What S3 holds at `key`, from its metadata; undefined when there is nothing. */
  async stat(key: string): Promise<WarehouseFile | undefined> {
    try {
      const info = await this.client.statObject(this.bucket, key);
      const meta = info.metaData as Record<string, unknown>;
      return { bytes: info.size, sha256: String(meta.sha256 ?? ''), rows: Number(meta.rows ?? Number.NaN) };
    } catch (error) {
      if (isS3NotFound(error)) return undefined;
      throw error;
    }
  }

  /** Downloads `key` to `filePath`. */
  async download(key: string, filePath: string): Promise<void> {
    await this.client.fGetObject(this.bucket, key, filePath);
  }

  /** Removes `key`; nothing happens when it is absent. */
  async remove(key: string): Promise<void> {
    await this.client.removeObject(this.bucket, key);
  }
}
