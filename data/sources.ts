import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isErrnoException } from '../core/errors.js';
import { sha256OfFile } from '../storage/content-hash.js';
import { ObjectNotFoundError, objectUri, type ObjectInfo, type ObjectSource } from '../storage/object-source.js';
import { ExtractError } from './extract-errors.js';

/**
 * Where the extract stage reads from: local files, objects of any S3 bucket, or a Postgres query. Each source is
 * resolved into a list of inputs with a content identity, before any data is read in full, so the snapshot's
 * fingerprint is known early. A Postgres query is exported by postgres-source.ts; the errors are extract-errors.ts's.
 */

/** The file formats DuckDB reads here. */
export type DataFormat = 'csv' | 'parquet' | 'json';

// ---------------------------------------------------------------------------------------------------------------
// Formats and names

const DATA_EXTENSIONS: Record<string, DataFormat> = {
  '.csv': 'csv',
  '.tsv': 'csv',
  '.parquet': 'parquet',
  '.json': 'json',
  '.ndjson': 'json',
  '.jsonl': 'json',
};
// DuckDB decompresses these by extension; Parquet compresses inside the file and has none.
const COMPRESSIONS = ['.gz', '.zst'];

/** The data extension of a name, compression suffix included (`.csv.gz`); '' when it has none we know. */
export function dataExtension(name: string): string {
  const lower = name.toLowerCase();
  const compression = COMPRESSIONS.find((c) => lower.endsWith(c)) ?? '';
  const stem = lower.slice(0, lower.length - compression.length);
  const ext = path.posix.extname(stem);
  if (!(ext in DATA_EXTENSIONS)) return '';
  if (compression && DATA_EXTENSIONS[ext] === 'parquet') return '';
  return ext + compression;
}

/** The format a name's extension says, if any. */
export function formatOfName(name: string): DataFormat | undefined {
  const ext = dataExtension(name);
  if (!ext) return undefined;
  return DATA_EXTENSIONS[COMPRESSIONS.reduce((e, c) => (e.endsWith(c) ? e.slice(0, -c.length) : e), ext)];
}

/** Hidden files and Hadoop-style markers (`_SUCCESS`, `_metadata`) are never data. */
function isHiddenName(name: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1);
  return base.startsWith('.') || base.startsWith('_');
}

// ---------------------------------------------------------------------------------------------------------------
// Globs

/** Whether a path or key pattern has wildcards: `*` (within a segment), `**` (any depth) or `?` (one character). */
export function hasGlob(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

/** A whole-string matcher for a `/`-separated glob pattern (`*`, `**`, `?`; everything else literal). */
export function globToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      // `**/` matches zero or more whole segments; a bare `**` anything at all.
      if (pattern[i + 2] === '/') {
        out += '(?:[^/]*/)*';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** The part of a pattern before its first wildcard, cut back to a whole segment: where listing starts. */
function literalPrefix(pattern: string): string {
  const first = pattern.search(/[*?]/);
  if (first < 0) return pattern;
  return pattern.slice(0, pattern.lastIndexOf('/', first) + 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Source specs

/** A source, as parsed from the request. */
export type SourceSpec =
  | { readonly kind: 'file'; readonly pattern: string; readonly display: string }
  | { readonly kind: 's3'; readonly bucket: string; readonly key: string; readonly display: string }
  | { readonly kind: 'postgres'; readonly query: string; readonly url: string | undefined; readonly display: string };

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses a source string (path, glob, `file://` or `s3://` URI) or a Postgres query record into a spec with a
 * canonical form: absolute paths, one bucket and key, the query without trailing semicolons.
 *
 * @throws ExtractError `invalid_request` for an unsupported scheme or a bad bucket name.
 */
export function parseSourceSpec(
  source: string | { readonly kind: 'postgres'; readonly query: string; readonly url?: string | undefined },
): SourceSpec {
  if (typeof source !== 'string') {
    const query = source.query.trim().replace(/[\s;]+$/, '');
    const where = source.url ? redactUrl(source.url) : 'the platform database';
    const short = query.replace(/\s+/g, ' ');
    const display = `postgres query on ${where}: ${short.length > 120 ? `${short.slice(0, 117)}...` : short}`;
    return { kind: 'postgres', query, url: source.url, display };
  }
  if (source.startsWith('s3://')) {
    const rest = source.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const key = slash < 0 ? '' : rest.slice(slash + 1);
    if (!BUCKET_NAME.test(bucket)) {
      throw new ExtractError('invalid_request', source, `${JSON.stringify(bucket)} is not a valid S3 bucket name`);
    }
    if (hasGlob(bucket)) throw new ExtractError('invalid_request', source, 'a bucket name cannot be a glob');
    return { kind: 's3', bucket, key, display: source };
  }
  if (source.startsWith('file://')) {
    let pattern: string;
    try {
      pattern = fileURLToPath(source);
    } catch (error) {
      throw new ExtractError('invalid_request', source, `not a valid file:// URL (${(error as Error).message})`);
    }
    return { kind: 'file', pattern, display: source };
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(source)) {
    throw new ExtractError('invalid_request', source, 'unsupported scheme; use a path, file://, s3:// or a query');
  }
  return { kind: 'file', pattern: path.resolve(source), display: source };
}

/** host:port/database of a Postgres URL, never its password. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `postgres://${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Resolving files and objects

/** One input file as DuckDB will read it, with the identity that enters the fingerprint. */
export interface ResolvedInput {
  /** Where DuckDB reads it (a local file, or an object's cache file once downloaded). */
  readonly name: string;
  readonly format: DataFormat | undefined;
  readonly bytes: number;
  /** Content identity: sha256 of a local file; bucket, key, size and ETag of an object. */
  readonly identity: Readonly<Record<string, string | number>>;
}

/**
 * Decides the format of a set of inputs: the requested one, or the one their extensions agree on.
 *
 * @throws ExtractError `unknown_format` when none is given and the names do not say one format.
 */
export function resolveFormat(
  display: string,
  names: readonly string[],
  requested: DataFormat | undefined,
): DataFormat {
  if (requested) return requested;
  const formats = new Set(names.map((n) => formatOfName(n)));
  const [only] = formats;
  if (formats.size === 1 && only !== undefined) return only;
  if (formats.has(undefined)) {
    const odd = names.find((n) => formatOfName(n) === undefined) ?? '';
    throw new ExtractError(
      'unknown_format',
      display,
      `cannot infer the format of ${JSON.stringify(path.basename(odd))} from its name; ` +
        'pass format (csv, parquet or json)',
    );
  }
  throw new ExtractError(
    'unknown_format',
    display,
    `the inputs mix formats (${[...formats].sort().join(', ')}); narrow the source or pass format`,
  );
}

/**
 * For a folder or prefix source: keeps the data files (known extension, not hidden), of the requested format when
 * one is given. Globs and single names are taken as the user wrote them.
 */
function keepDataFiles<T>(items: readonly T[], nameOf: (item: T) => string, requested: DataFormat | undefined): T[] {
  return items.filter((item) => {
    const name = nameOf(item);
    const format = formatOfName(name);
    return !isHiddenName(name) && format !== undefined && (requested === undefined || format === requested);
  });
}

/**
 * Expands a local path, folder or glob into the paths of its data files, sorted, and their format; reads no file.
 *
 * @throws ExtractError `source_not_found` when nothing matches.
 */
export async function listLocalFiles(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
): Promise<{ paths: string[]; format: DataFormat }> {
  let paths: string[];
  if (hasGlob(spec.pattern)) {
    const base = literalPrefix(spec.pattern) || path.sep;
    const matcher = globToRegExp(spec.pattern);
    const recursive = spec.pattern.slice(base.length).includes('/');
    paths = (await listFiles(base, recursive)).filter((p) => matcher.test(p) && !isHiddenName(p));
  } else {
    const info = await statOrUndefined(spec.pattern);
    if (info?.isFile()) paths = [spec.pattern];
    else if (info?.isDirectory()) {
      paths = keepDataFiles(await listFiles(spec.pattern, true), (p) => path.relative(spec.pattern, p), requested);
    } else paths = [];
  }
  if (paths.length === 0) {
    throw new ExtractError('source_not_found', spec.display, 'no file matches (or the folder holds no data files)');
  }
  paths.sort();
  return { paths, format: resolveFormat(spec.display, paths, requested) };
}

/**
 * Expands a local path, folder or glob into its files, sorted, each hashed (sha256) for its identity.
 *
 * @throws ExtractError `source_not_found` when nothing matches.
 */
export async function resolveLocalFiles(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
): Promise<{ files: ResolvedInput[]; format: DataFormat }> {
  const { paths, format } = await listLocalFiles(spec, requested);
  const files = await Promise.all(
    paths.map(async (p) => {
      const { sha256, bytes } = await sha256OfFile(p);
      return { name: p, format, bytes, identity: { path: p, sha256 } };
    }),
  );
  return { files, format };
}

async function listFiles(dir: string, recursive: boolean): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive });
  } catch (error) {
    if (isErrnoException(error) && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) return [];
    throw error;
  }
  const files = await Promise.all(
    entries.map(async (e) => {
      const full = path.join(e.parentPath, e.name);
      // A symbolic link counts as the file it points to (a `current.csv` link to the latest export, say).
      if (e.isSymbolicLink()) return (await statOrUndefined(full))?.isFile() ? full : undefined;
      return e.isFile() ? full : undefined;
    }),
  );
  return files.filter((f): f is string => f !== undefined);
}

async function statOrUndefined(p: string) {
  try {
    return await stat(p);
  } catch (error) {
    if (isErrnoException(error) && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) return undefined;
    throw error;
  }
}

/**
 * Lists the objects an `s3://` source names: one object, every data object under a prefix, or the keys matching a
 * glob. Only listing: nothing is downloaded.
 *
 * @throws ExtractError `source_not_found` when the bucket does not exist or nothing matches.
 */
export async function resolveObjects(
  spec: Extract<SourceSpec, { kind: 's3' }>,
  objects: ObjectSource,
  requested: DataFormat | undefined,
): Promise<{ objects: ObjectInfo[]; format: DataFormat }> {
  let found: ObjectInfo[];
  try {
    if (hasGlob(spec.key)) {
      const matcher = globToRegExp(spec.key);
      found = (await objects.list(spec.bucket, literalPrefix(spec.key))).filter(
        (o) => matcher.test(o.key) && !isHiddenName(o.key),
      );
    } else {
      const single = spec.key && !spec.key.endsWith('/') ? await objects.stat(spec.bucket, spec.key) : undefined;
      if (single) found = [single];
      else {
        // `s3://b/flights` means the folder `flights/`, never also `flights-2/...`.
        const prefix = spec.key === '' || spec.key.endsWith('/') ? spec.key : `${spec.key}/`;
        found = keepDataFiles(await objects.list(spec.bucket, prefix), (o) => o.key.slice(prefix.length), requested);
      }
    }
  } catch (error) {
    if (error instanceof ObjectNotFoundError) {
      throw new ExtractError('source_not_found', spec.display, `bucket ${spec.bucket} does not exist`, {
        cause: error,
      });
    }
    throw error;
  }
  if (found.length === 0) {
    throw new ExtractError('source_not_found', spec.display, 'no object matches (or the prefix holds no data files)');
  }
  const format = resolveFormat(
    spec.display,
    found.map((o) => o.key),
    requested,
  );
  return { objects: found, format };
}

/** The identity of an object in the fingerprint: what S3 says about its content, and where it is. */
export function objectIdentity(object: ObjectInfo): Record<string, string | number> {
  return { uri: objectUri(object.bucket, object.key), size: object.size, etag: object.etag };
}
