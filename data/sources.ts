import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isErrnoException } from '../core/errors.js';
import { sha256OfFile } from '../storage/content-hash.js';
import { ObjectNotFoundError, objectUri, type ObjectInfo, type ObjectSource } from '../storage/object-source.js';
import { authorizeLocalPath, authorizeObjects, isObjectAllowed, type DataAccessPolicy } from './access-policy.js';
import { ExtractError } from './extract-errors.js';

/**
 * Where the extract stage reads from: local files, S3 objects, or a Postgres query. Each source is resolved into a
 * list of inputs with a content identity, before any data is read in full, so the snapshot's fingerprint is known
 * early. Resolution is bounded (a cap on the files or objects visited and on the depth of a walk) and refused,
 * before anything is listed, when the source lies outside the {@link DataAccessPolicy} every caller gives. A Postgres
 * query is exported by postgres-source.ts; the errors are extract-errors.ts's.
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

/**
 * A whole-string matcher for a `/`-separated glob pattern: `*` any run of characters within a segment, `?` one
 * character, a `**` segment zero or more whole segments; everything else literal.
 *
 * Matching takes time linear in the pattern times the name, whatever the pattern: a source's glob comes from a
 * request, and the regular expressions that glob libraries (picomatch, minimatch) compile backtrack exponentially
 * on patterns like `*a*a*a*a*b` (picomatch: 30 s for four stars against a 200-character name).
 */
export function globMatcher(pattern: string): (candidate: string) => boolean {
  const patternSegments = pattern.split('/');
  return (candidate) => matchSegments(patternSegments, candidate.split('/'));
}

/** Dynamic programming over segments: `reach[j]` says the pattern so far matches the first j segments. */
function matchSegments(pattern: readonly string[], segments: readonly string[]): boolean {
  let reach = segments.map(() => false).concat(false);
  reach[0] = true;
  for (const part of pattern) {
    const next = reach.map(() => false);
    if (part === '**') {
      let any = false;
      for (let j = 0; j < reach.length; j++) next[j] = any ||= reach[j]!;
    } else {
      for (let j = 0; j < segments.length; j++) if (reach[j] && matchSegment(part, segments[j]!)) next[j + 1] = true;
    }
    reach = next;
  }
  return reach[segments.length]!;
}

/** `*` and `?` within one segment, by the two-pointer algorithm (back to the last `*` only): no regex. */
function matchSegment(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let mark = 0;
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === name[n])) {
      p += 1;
      n += 1;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p;
      p += 1;
      mark = n;
    } else if (star >= 0) {
      p = star + 1;
      mark += 1;
      n = mark;
    } else return false;
  }
  while (pattern[p] === '*') p += 1;
  return p === pattern.length;
}

/** The part of a pattern before its first wildcard, cut back to a whole segment: where listing starts. */
function literalPrefix(pattern: string): string {
  const first = pattern.search(/[*?]/);
  if (first < 0) return pattern;
  return pattern.slice(0, pattern.lastIndexOf('/', first) + 1);
}

/** How many folders below its literal base a glob can match: the cap for `**`, else its remaining segments. */
function globDepth(rest: string, maxDepth: number): number {
  return rest.includes('**') ? maxDepth : rest.split('/').length - 1;
}

// ---------------------------------------------------------------------------------------------------------------
// Source specs

/** A source, as parsed from the request. */
export type SourceSpec =
  | { readonly kind: 'file'; readonly pattern: string; readonly display: string }
  | { readonly kind: 's3'; readonly bucket: string; readonly key: string; readonly display: string }
  | {
      readonly kind: 'postgres';
      readonly query: string;
      /** The named connection to query; undefined: the platform database's read-only connection. */
      readonly connection: string | undefined;
      readonly display: string;
    };

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses a source string (path, glob, `file://` or `s3://` URI) or a Postgres query record into a spec with a
 * canonical form: absolute paths, one bucket and key, the query without trailing semicolons.
 *
 * @throws ExtractError `invalid_request` for an unsupported scheme or a bad bucket name.
 */
export function parseSourceSpec(
  source: string | { readonly kind: 'postgres'; readonly query: string; readonly connection?: string | undefined },
): SourceSpec {
  if (typeof source !== 'string') {
    const query = source.query.trim().replace(/[\s;]+$/, '');
    const where = source.connection ? `connection ${source.connection}` : 'the platform database';
    const short = query.replace(/\s+/g, ' ');
    const display = `postgres query on ${where}: ${short.length > 120 ? `${short.slice(0, 117)}...` : short}`;
    return { kind: 'postgres', query, connection: source.connection, display };
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

/** The caps a resolution runs under: the policy's, or the defaults. */

/**
 * Expands a local path, folder or glob into the paths of its data files, sorted, and their format; reads no file.
 * A glob is walked from its deepest literal folder (never from `/`), at most as deep as it can match (`**`: the
 * policy's depth cap) and over at most the policy's number of entries. With a policy, the path (or the glob's base)
 * and every symbolic link found must lie inside a data root once resolved.
 *
 * @throws SourceNotAllowedError when the source lies outside the policy's roots (before anything is listed).
 * @throws ExtractError `source_not_found` when nothing matches; `source_too_broad` past a cap; `invalid_request` for
 *   a glob at the file system's root.
 */
export async function listLocalFiles(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
  policy: DataAccessPolicy,
): Promise<{ paths: string[]; format: DataFormat }> {
  const caps = policy;
  const authorize = (p: string, shown: string) => authorizeLocalPath(policy, p, shown);
  let paths: string[];
  if (hasGlob(spec.pattern)) {
    const cut = literalPrefix(spec.pattern);
    const start = path.resolve(cut || path.sep);
    if (start === path.parse(start).root) {
      throw new ExtractError('invalid_request', spec.display, 'a glob must start below a folder, never at the root');
    }
    const base = await authorize(cut, spec.display);
    const rest = spec.pattern.slice(cut.length);
    const matcher = globMatcher(rest);
    const walked = await walk(base, globDepth(rest, caps.maxDepth), rest.includes('**'), caps, spec.display);
    paths = walked.filter((p) => matcher(path.relative(base, p).split(path.sep).join('/')) && !isHiddenName(p));
  } else {
    const real = await authorize(spec.pattern, spec.display);
    const info = await statOrUndefined(real);
    if (info?.isFile()) paths = [real];
    else if (info?.isDirectory()) {
      const walked = await walk(real, caps.maxDepth, true, caps, spec.display);
      paths = keepDataFiles(walked, (p) => path.relative(real, p), requested);
    } else paths = [];
  }
  if (paths.length === 0) {
    throw new ExtractError('source_not_found', spec.display, 'no file matches (or the folder holds no data files)');
  }
  // A symbolic link in a root may point anywhere: what it reaches must lie in a root too.
  await Promise.all(paths.map((p) => authorizeLocalPath(policy, p, `${spec.display} (${p})`)));
  paths.sort();
  return { paths, format: resolveFormat(spec.display, paths, requested) };
}

/**
 * Expands a local path, folder or glob into its files, sorted, each hashed (sha256) for its identity.
 *
 * @throws SourceNotAllowedError, ExtractError as {@link listLocalFiles}.
 */
export async function resolveLocalFiles(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
  policy: DataAccessPolicy,
): Promise<{ files: ResolvedInput[]; format: DataFormat }> {
  const { paths, format } = await listLocalFiles(spec, requested, policy);
  const files = await Promise.all(
    paths.map(async (p) => {
      const { sha256, bytes } = await sha256OfFile(p);
      return { name: p, format, bytes, identity: { path: p, sha256 } };
    }),
  );
  return { files, format };
}

function tooBroad(display: string, problem: string): ExtractError {
  return new ExtractError('source_too_broad', display, `${problem}; narrow the path or glob`);
}

/**
 * The files under `base`, breadth first, descending at most `maxDepth` folders (symbolic links to folders are not
 * followed; links to files count as files). Past `caps.maxFiles` entries, or (with `refuseDeeper`) below
 * `maxDepth`, the walk stops with `source_too_broad`.
 */
async function walk(
  base: string,
  maxDepth: number,
  refuseDeeper: boolean,
  caps: { maxFiles: number; maxDepth: number },
  display: string,
): Promise<string[]> {
  const files: string[] = [];
  let visited = 0;
  let level = [base];
  for (let depth = 0; level.length > 0; depth++) {
    const next: string[] = [];
    for (const dir of level) {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isErrnoException(error) && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) continue;
        throw error;
      }
      visited += entries.length;
      if (visited > caps.maxFiles) throw tooBroad(display, `it holds more than ${caps.maxFiles} files and folders`);
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          if (depth < maxDepth) next.push(full);
          else if (refuseDeeper) throw tooBroad(display, `it has folders more than ${maxDepth} levels deep`);
        } else if (entry.isFile()) files.push(full);
        // A symbolic link counts as the file it points to (a `current.csv` link to the latest export, say).
        else if (entry.isSymbolicLink() && (await statOrUndefined(full))?.isFile()) files.push(full);
      }
    }
    level = next;
  }
  return files;
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
 * glob. Only listing, of at most the policy's number of objects: nothing is downloaded. With a policy, the bucket
 * and the listed prefix must be granted before anything is listed.
 *
 * @throws SourceNotAllowedError when the bucket or prefix lies outside the policy.
 * @throws ExtractError `source_not_found` when the bucket does not exist or nothing matches; `source_too_broad`
 *   when the listing holds more objects than the cap.
 */
export async function resolveObjects(
  spec: Extract<SourceSpec, { kind: 's3' }>,
  objects: ObjectSource,
  requested: DataFormat | undefined,
  policy: DataAccessPolicy,
): Promise<{ objects: ObjectInfo[]; format: DataFormat }> {
  const { maxFiles } = policy;
  const list = async (prefix: string) => {
    authorizeObjects(policy, spec.bucket, prefix, spec.display);
    const listed = await objects.list(spec.bucket, prefix, { maxKeys: maxFiles + 1 });
    if (listed.length > maxFiles) throw tooBroad(spec.display, `it holds more than ${maxFiles} objects`);
    return policy ? listed.filter((o) => isObjectAllowed(policy, o.bucket, o.key)) : listed;
  };
  let found: ObjectInfo[];
  try {
    if (hasGlob(spec.key)) {
      const matcher = globMatcher(spec.key);
      found = (await list(literalPrefix(spec.key))).filter((o) => matcher(o.key) && !isHiddenName(o.key));
    } else {
      // A key outside the policy is never looked at as an object; as a folder, listing it is refused below.
      const asObject =
        spec.key !== '' && !spec.key.endsWith('/') && (!policy || isObjectAllowed(policy, spec.bucket, spec.key));
      const single = asObject ? await objects.stat(spec.bucket, spec.key) : undefined;
      if (single) found = [single];
      else {
        // `s3://b/flights` means the folder `flights/`, never also `flights-2/...`.
        const prefix = spec.key === '' || spec.key.endsWith('/') ? spec.key : `${spec.key}/`;
        found = keepDataFiles(await list(prefix), (o) => o.key.slice(prefix.length), requested);
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
