/** The S3 error codes that mean "there is no such object (or bucket)", as opposed to a transient failure. */
const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket']);

/** True when an S3 client error says the object or its bucket does not exist. */
export function isS3NotFound(error: unknown): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    'code' in error &&
    typeof error.code === 'string' &&
    NOT_FOUND_CODES.has(error.code)
  );
}
