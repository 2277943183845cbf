/**
 * The data access policy: what a pipeline's source may read. Local files only under the configured roots
 * (`DATA_ROOTS`), objects only in the configured buckets or bucket prefixes (`DATA_BUCKETS`), and Postgres only
 * through named connections (storage/connection-store.ts). Every check happens before a byte of the source is read,
 * and paths are compared after symbolic links and `..` are resolved, so neither escapes a root.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { DomainError, isErrnoException } from '../core/errors.js';

/** One bucket a source may read, optionally only below a key prefix (`''`: the whole bucket). */
export interface BucketGrant {
  /** A bucket name, or `*` for every bucket the platform's S3 keys can read. */
  readonly bucket: string;
  readonly prefix: string;
}

/** What sources may read, and how far a glob or listing may go. */
export interface DataAccessPolicy {
  /** Absolute folders local sources must lie in; compared after resolving symbolic links. */
  readonly roots: readonly string[];
  readonly buckets: readonly BucketGrant[];
  /** Most files or objects one source may visit while it is resolved (a folder walk, a listing). */
  readonly maxFiles: number;
  /** Deepest folder below a glob's literal base that a walk descends into. */
  readonly maxDepth: number;
}

/** Default cap on the entries a source resolution visits. */
export const DEFAULT_MAX_SOURCE_FILES = 10_000;
/** Default cap on the folder depth a glob walks below its literal base. */
export const DEFAULT_MAX_SOURCE_DEPTH = 16;

/** Refuses everything: what a caller that was given no policy gets. */
export const DENY_ALL_POLICY: DataAccessPolicy = {
  roots: [],
  buckets: [],
  maxFiles: DEFAULT_MAX_SOURCE_FILES,
  maxDepth: DEFAULT_MAX_SOURCE_DEPTH,
};

/**
 * Thrown when a source lies outside the data access policy (a path outside the data roots, a bucket or prefix not
 * granted, a raw database URL instead of a named connection). Raised before anything of the source is read; the
 * message names the setting that decides, never the source's content.
 */
export class SourceNotAllowedError extends DomainError {
  override readonly name = 'SourceNotAllowedError';
  constructor(message: string) {
    super('forbidden', message, { code: 'source_not_allowed' });
  }
}

/**
 * Builds a policy from settings: roots are made absolute, `DATA_BUCKETS` entries (`bucket`, `bucket/prefix/` or `*`)
 * parsed.
 *
 * @example createDataAccessPolicy({ roots: ['/srv/data'], buckets: ['mlops-artifacts/landing/'] })
 */
export function createDataAccessPolicy(settings: {
  roots: readonly string[];
  buckets: readonly string[];
  maxFiles?: number;
  maxDepth?: number;
}): DataAccessPolicy {
  return {
    roots: settings.roots.map((r) => path.resolve(r)),
    buckets: settings.buckets.map(parseBucketGrant),
    maxFiles: settings.maxFiles ?? DEFAULT_MAX_SOURCE_FILES,
    maxDepth: settings.maxDepth ?? DEFAULT_MAX_SOURCE_DEPTH,
  };
}

/** `bucket`, `bucket/prefix` (a prefix is a folder: a trailing `/` is implied) or `*`. */
export function parseBucketGrant(entry: string): BucketGrant {
  const trimmed = entry.trim();
  const slash = trimmed.indexOf('/');
  if (slash < 0) return { bucket: trimmed, prefix: '' };
  const prefix = trimmed.slice(slash + 1);
  return { bucket: trimmed.slice(0, slash), prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/` };
}

function describeRoots(policy: DataAccessPolicy): string {
  return `DATA_ROOTS=${policy.roots.join(',') || '(none)'}`;
}

function describeBuckets(policy: DataAccessPolicy): string {
  const grants = policy.buckets.map((g) => (g.prefix ? `${g.bucket}/${g.prefix}` : g.bucket));
  return `DATA_BUCKETS=${grants.join(',') || '(none)'}`;
}

/**
 * The real path of `target`, whether or not it exists: the deepest existing ancestor is resolved (symbolic links,
 * `..`) and the rest appended.
 */
async function realPathOf(target: string): Promise<string> {
  const absolute = path.resolve(target);
  const rest: string[] = [];
  let current = absolute;
  for (;;) {
    try {
      const real = await realpath(current);
      return rest.length === 0 ? real : path.join(real, ...rest.reverse());
    } catch (error) {
      if (!isErrnoException(error) || (error.code !== 'ENOENT' && error.code !== 'ENOTDIR')) throw error;
      const parent = path.dirname(current);
      if (parent === current) return absolute;
      rest.push(path.basename(current));
      current = parent;
    }
  }
}

function isInside(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/**
 * Checks that a local path (a file, a folder, or a glob's literal base) lies inside a data root once symbolic links
 * and `..` are resolved, and returns its real path.
 *
 * @param shown How the source was written (`file:///etc/passwd`), for the message.
 * @throws SourceNotAllowedError when it lies outside every root (or no root is configured).
 */
export async function authorizeLocalPath(policy: DataAccessPolicy, target: string, shown = target): Promise<string> {
  const real = await realPathOf(target);
  for (const root of policy.roots) {
    if (isInside(real, await realPathOf(root))) return real;
  }
  throw new SourceNotAllowedError(`${shown} is outside the data roots (${describeRoots(policy)})`);
}

/**
 * Checks that every key under `prefix` of `bucket` may be read: the bucket is granted (or `*` is), and the prefix
 * (the literal part of a key, a glob's base, or a folder with its trailing `/`) lies under the grant's prefix.
 *
 * @throws SourceNotAllowedError otherwise.
 */
export function authorizeObjects(policy: DataAccessPolicy, bucket: string, prefix: string, shown: string): void {
  if (!isObjectAllowed(policy, bucket, prefix))
    throw new SourceNotAllowedError(`${shown} is outside the allowed buckets (${describeBuckets(policy)})`);
}

/** Whether an object key holds a `.` or `..` segment, which some stores normalize away. */
function hasDotSegment(key: string): boolean {
  return key.split('/').some((s) => s === '..' || s === '.');
}

/** Whether a key (or every key under a prefix) of `bucket` may be read; {@link authorizeObjects} without throwing. */
export function isObjectAllowed(policy: DataAccessPolicy, bucket: string, key: string): boolean {
  if (hasDotSegment(key)) return false;
  return policy.buckets.some((g) => (g.bucket === '*' || g.bucket === bucket) && key.startsWith(g.prefix));
}
