/**
 * Train/eval splits as SQL expressions: each yields {@link SPLIT_TRAIN}, {@link SPLIT_EVAL} or NULL (the row is in
 * neither split) per row, so the split is one projection inside the Transform stage's single pass over the data.
 */
import { createHash } from 'node:crypto';
import type { DataEngine } from './engine.js';
import { sqlIdentifier, sqlString } from './engine.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

export const SPLIT_TRAIN = 0;
export const SPLIT_EVAL = 1;

/**
 * Split by time: train is `column < trainBefore`, eval is `trainBefore <= column < evalBefore` (no upper bound when
 * `evalBefore` is absent). A row exactly at a cut-off belongs to the later split; rows with a null time, or at or
 * after `evalBefore`, are in neither.
 */
export interface TimeSplitSpec {
  readonly kind: 'time';
  /** A DATE or TIMESTAMP column of the input. */
  readonly column: string;
  /** ISO 8601: `2001-05-01`, `2001-05-01T06:00:00`, optionally with `Z` or an offset (see {@link timeSplitSql}). */
  readonly trainBefore: string;
  readonly evalBefore?: string;
}

/**
 * Split by a stable hash of a key: a row is in eval when {@link hashBucket} of its key is below
 * `evalFraction * 2^32`. Rows with the same key always land together, on any machine and in any DuckDB version.
 */
export interface HashSplitSpec {
  readonly kind: 'hash';
  /** A column or a validated expression (see expressions.ts); cast to VARCHAR before hashing. */
  readonly key: string;
  /** In (0, 1). */
  readonly evalFraction: number;
  /** Changes the assignment; default 0. */
  readonly seed?: string | number;
}

export type SplitSpec = TimeSplitSpec | HashSplitSpec;

/** Thrown when a split cannot be applied: a cut-off that is not a date, cut-offs out of order, a non-time column. */
export class SplitError extends DomainError {
  override readonly name = 'SplitError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid', message, options);
  }
}

const TIME_TYPES = new Set(['DATE', 'TIMESTAMP', 'TIMESTAMP_S', 'TIMESTAMP_MS', 'TIMESTAMP_NS']);
const TIMESTAMPTZ = new Set(['TIMESTAMP WITH TIME ZONE', 'TIMESTAMPTZ']);
const ISO = /^(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)(Z|[+-]\d{2}:\d{2})?$/;

/**
 * Bucket of a key in [0, 2^32): the first 8 hex digits of `md5(key + ':' + seed)` as a big-endian unsigned integer,
 * where a null key hashes as the empty string. This is the reference for {@link hashSplitSql}; other languages can
 * reproduce it exactly (Python: `int(md5(f"{key}:{seed}".encode()).hexdigest()[:8], 16)`).
 */
export function hashBucket(key: string | null, seed: string | number = 0): number {
  return parseInt(
    createHash('md5')
      .update(`${key ?? ''}:${String(seed)}`, 'utf8')
      .digest('hex')
      .slice(0, 8),
    16,
  );
}

/** Buckets below this integer are eval. */
export function evalThreshold(evalFraction: number): number {
  return Math.floor(evalFraction * 2 ** 32);
}

/**
 * The SQL of a hash split over `keySql` (an already validated expression or a quoted column). The key is hashed as
 * DuckDB's `CAST(key AS VARCHAR)`, which is stable for strings and integers; for floating-point and time keys the
 * text form is DuckDB's and could change between versions, so prefer an integer or string key.
 */
export function hashSplitSql(keySql: string, evalFraction: number, seed: string | number = 0): string {
  if (!(evalFraction > 0 && evalFraction < 1))
    throw new SplitError(`evalFraction must be in (0, 1); got ${evalFraction}`);
  // md5, not DuckDB's hash(): hash() is not guaranteed stable across versions or platforms.
  const text = `coalesce(CAST((${keySql}) AS VARCHAR), '') || ${sqlString(`:${String(seed)}`)}`;
  const bucket = `CAST(('0x' || substr(md5(${text}), 1, 8)) AS UBIGINT)`;
  return `CASE WHEN ${bucket} < ${evalThreshold(evalFraction)} THEN ${SPLIT_EVAL} ELSE ${SPLIT_TRAIN} END`;
}

/**
 * The SQL of a time split over the input column `column` of DuckDB type `type`. Cut-offs are checked with DuckDB
 * (they must be valid dates, in order). For DATE and TIMESTAMP columns, which have no time zone, a cut-off may end in
 * `Z` or `+00:00` but not another offset (DuckDB would silently drop it); for TIMESTAMP WITH TIME ZONE columns a
 * cut-off without an offset means UTC.
 */
export async function timeSplitSql(
  engine: DataEngine,
  column: string,
  type: string,
  trainBefore: string,
  evalBefore?: string,
): Promise<string> {
  const zoned = TIMESTAMPTZ.has(type);
  if (!zoned && !TIME_TYPES.has(type)) {
    throw new SplitError(`time split column \`${column}\` is ${type}; a DATE or TIMESTAMP column is needed`);
  }
  const literal = (name: string, value: string): string => {
    const match = ISO.exec(value);
    if (!match) throw new SplitError(`${name} \`${value}\` is not an ISO 8601 date or timestamp`);
    const [, local, offset] = match;
    if (zoned) {
      // DuckDB reads an offset only after a time of day: '2001-02-01Z' is not a timestamp.
      const time = local!.length === 10 ? `${local!}T00:00:00` : local!;
      return `CAST(${sqlString(`${time}${offset ?? 'Z'}`)} AS TIMESTAMPTZ)`;
    }
    if (offset !== undefined && offset !== 'Z' && offset !== '+00:00') {
      throw new SplitError(`${name} \`${value}\` has an offset, but column \`${column}\` has no time zone`);
    }
    return `CAST(${sqlString(local!)} AS TIMESTAMP)`;
  };
  const train = literal('trainBefore', trainBefore);
  const evalCut = evalBefore === undefined ? undefined : literal('evalBefore', evalBefore);
  try {
    // Evaluating the literals checks that they are real dates (2001-02-30 is not).
    const [row] = await engine.rows<{ ordered: boolean }>(
      `SELECT ${evalCut ? `${train} < ${evalCut}` : `${train} IS NOT NULL`} AS ordered`,
    );
    if (row?.ordered !== true)
      throw new SplitError(`evalBefore (${evalBefore}) must be after trainBefore (${trainBefore})`);
  } catch (error) {
    if (error instanceof SplitError) throw error;
    throw new SplitError(`invalid cut-off: ${error instanceof Error ? error.message : String(error)}`);
  }
  const col = sqlIdentifier(column);
  const evalBranch = evalCut
    ? `WHEN ${col} < ${evalCut} THEN ${SPLIT_EVAL}`
    : `WHEN ${col} IS NOT NULL THEN ${SPLIT_EVAL}`;
  return `CASE WHEN ${col} < ${train} THEN ${SPLIT_TRAIN} ${evalBranch} END`;
}
