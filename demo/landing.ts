/**
 * Landing the demo's data: the span's rows of vega-datasets' `flights-3m.parquet`, written by DuckDB as one Parquet
 * file and uploaded to S3 unless the object already holds the same bytes.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { Client as S3Client } from 'minio';
import { DataEngine, sqlString } from '../data/engine.js';
import { isS3NotFound } from '../storage/s3-errors.js';

/** `flights-3m.parquet` of the installed vega-datasets package (3M rows, January–June 2001). */
export function flightsFile(): string {
  // The package exports only its build; its data folder sits next to it.
  const entry = createRequire(import.meta.url).resolve('vega-datasets');
  return path.resolve(path.dirname(entry), '..', 'data', 'flights-3m.parquet');
}

export interface LandingOptions {
  /** The S3 client and bucket to land in. */
  readonly s3: S3Client;
  readonly bucket: string;
  /** Where a missing bucket is created. */
  readonly region?: string;
  readonly key: string;
  /** Rows with `date` in [from, to) (ISO dates). */
  readonly span: { readonly from: string; readonly to: string };
  /**
   * The select list, default `*`: a documented shift lands as `* REPLACE (distance * 1.8 AS distance)`. Our own
   * constants only, never input: it is pasted into SQL.
   */
  readonly columns?: string;
  readonly signal?: AbortSignal;
}

export interface LandedData {
  readonly uri: string;
  readonly bucket: string;
  readonly key: string;
  readonly rows: number;
  readonly bytes: number;
  readonly md5: string;
  /** False when the object already held these exact bytes (nothing was uploaded). */
  readonly uploaded: boolean;
}

/**
 * Writes the span's rows of flights-3m.parquet as one zstd Parquet file (DuckDB, sandboxed) and uploads it to
 * `s3://bucket/key`, unless the object already holds these bytes. DuckDB writes the same bytes for the same rows, so
 * landing again is a no-op: same bytes, same object, same fingerprint for the extract stage.
 */
export async function landFlights(options: LandingOptions): Promise<LandedData> {
  const source = flightsFile();
  if (!fs.existsSync(source)) {
    throw new Error(`${source} is missing: the demo reads it from the vega-datasets package (npm ci installs it)`);
  }
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-demo-landing-'));
  try {
    const file = path.join(workDir, path.posix.basename(options.key));
    const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(source)] });
    const interrupt = () => engine.connection.interrupt();
    options.signal?.addEventListener('abort', interrupt, { once: true });
    let rows: number;
    try {
      options.signal?.throwIfAborted();
      const [result] = await engine.rows<{ Count: number }>(
        `COPY (SELECT ${options.columns ?? '*'} FROM read_parquet(${sqlString(source)}) ` +
          `WHERE date >= TIMESTAMP ${sqlString(options.span.from)} AND date < TIMESTAMP ${sqlString(options.span.to)}) ` +
          `TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`,
      );
      rows = Number(result?.Count ?? 0);
    } finally {
      options.signal?.removeEventListener('abort', interrupt);
      engine.close();
    }
    options.signal?.throwIfAborted();
    const bytes = fs.statSync(file).size;
    const content = fs.readFileSync(file);
    const md5 = createHash('md5').update(content).digest('hex');
    const sha256 = createHash('sha256').update(content).digest('hex');
    const uri = `s3://${options.bucket}/${options.key}`;
    const existing = await statObject(options.s3, options.bucket, options.key);
    // A single-part upload's ETag is the MD5 of its bytes; stores that hash otherwise keep our sha256 in metadata.
    const same =
      existing !== undefined &&
      existing.size === bytes &&
      (existing.etag === md5 || existing.metaData.sha256 === sha256);
    if (!same) {
      if (!(await options.s3.bucketExists(options.bucket))) await options.s3.makeBucket(options.bucket, options.region);
      await options.s3.fPutObject(options.bucket, options.key, file, {
        'Content-Type': 'application/vnd.apache.parquet',
        sha256,
        rows: String(rows),
      });
    }
    return { uri, bucket: options.bucket, key: options.key, rows, bytes, md5, uploaded: !same };
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

async function statObject(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<{ size: number; etag: string; metaData: Record<string, string> } | undefined> {
  try {
    const stat = await s3.statObject(bucket, key);
    return {
      size: stat.size,
      etag: stat.etag.replace(/^"|"$/g, ''),
      metaData: (stat.metaData ?? {}) as Record<string, string>,
    };
  } catch (error) {
    if (isS3NotFound(error)) return undefined;
    throw error;
  }
}
