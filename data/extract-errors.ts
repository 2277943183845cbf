/**
 * The extract stage's refusals: one error class with a stable `code` per cause, each mapped to its domain kind (and
 * so its HTTP status and failure type). Thrown by sources.ts, postgres-source.ts and extract.ts.
 */
import { DomainError, type DomainErrorKind } from '../core/errors.js';

/** Stable `code`s of {@link ExtractError}; callers match on them. */
export const ExtractErrorCode = {
  /** The request itself is malformed (not a path or URI, bad span, unknown format name). */
  InvalidRequest: 'invalid_request',
  /** No file or object matches the source. */
  SourceNotFound: 'source_not_found',
  /** The inputs hold no rows (or no columns). */
  EmptySource: 'empty_source',
  /** The inputs hold rows, but none inside the span. */
  EmptySpan: 'empty_span',
  /** The format is neither given nor inferable from the names, or the inputs mix formats. */
  UnknownFormat: 'unknown_format',
  /** DuckDB cannot read an input as its format (not Parquet, broken encoding, malformed JSON). */
  CorruptInput: 'corrupt_input',
  /** The span names a missing column, or one that is not a timestamp or date. */
  InvalidSpan: 'invalid_span',
  /** The Postgres query is not a single read-only SELECT. */
  InvalidQuery: 'invalid_query',
  /** Postgres refused or failed the query. */
  QueryFailed: 'query_failed',
  /** An object changed between listing and download; retrying reads the new version. */
  SourceChanged: 'source_changed',
  /** Resolving the source would visit more files or objects, or descend deeper, than the policy's caps allow. */
  SourceTooBroad: 'source_too_broad',
} as const;
export type ExtractErrorCodeName = (typeof ExtractErrorCode)[keyof typeof ExtractErrorCode];

const KIND: Record<ExtractErrorCodeName, DomainErrorKind> = {
  invalid_request: 'invalid',
  source_not_found: 'not_found',
  empty_source: 'invalid_data',
  empty_span: 'invalid_data',
  unknown_format: 'invalid',
  corrupt_input: 'invalid_data',
  invalid_span: 'invalid',
  invalid_query: 'invalid',
  query_failed: 'invalid',
  source_changed: 'not_found',
  source_too_broad: 'invalid',
};

/**
 * Thrown when a source cannot be extracted because of what it is or holds (never for a transient service failure,
 * which is thrown as it comes). `retryable` says whether trying again can help: false for everything but
 * `source_changed` and a Postgres connection or resource failure. The message names the source.
 */
export class ExtractError extends DomainError {
  override readonly name = 'ExtractError';
  override readonly code: ExtractErrorCodeName;
  constructor(
    code: ExtractErrorCodeName,
    /** The source as the user wrote it (a Postgres URL without its password). */
    readonly source: string,
    problem: string,
    options: ErrorOptions & { retryable?: boolean } = {},
  ) {
    super(KIND[code], `${source}: ${problem}`, {
      ...options,
      code,
      details: { code },
      retryable: options.retryable ?? code === 'source_changed',
    });
    this.code = code;
  }
}

/** Type guard for {@link ExtractError}, optionally of one code. */
export function isExtractError(error: unknown, code?: ExtractErrorCodeName): error is ExtractError {
  return error instanceof ExtractError && (code === undefined || error.code === code);
}
