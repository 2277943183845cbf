import { z } from '@hono/zod-openapi';
import { PIPELINE_NAME_PATTERN } from '../../pipelines/definition.js';
import { errorBodySchema } from '../errors.js';

/** An error response of a route, in the one error shape. */
export const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: errorBodySchema } },
});

/** A JSON success response of a route. */
export const jsonResponse = <T extends z.ZodType>(description: string, schema: T) => ({
  description,
  content: { 'application/json': { schema } },
});

/** A model's or deployment's name: letters, digits and `._-`, starting with a letter or digit, at most 128. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The `{name}` path parameter of the model and deployment routes. */
export const nameParamSchema = z
  .string()
  .regex(NAME_PATTERN, 'letters, digits and ._- only, at most 128')
  .openapi({ param: { name: 'name', in: 'path' }, example: 'flight-delays' });

/** Matches a UUID of any version, as Postgres's uuid type accepts. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A timestamp column as JSON. */
export function iso(date: Date): string;
export function iso(date: Date | null): string | null;
export function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString();
}

/** Milliseconds from `start` to `end`, or null while there is no end. */
export function durationMs(start: Date, end: Date | null): number | null {
  return end === null ? null : Math.max(0, end.getTime() - start.getTime());
}

/** The value as a plain JSON object, or undefined. */
export function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/** A pipeline's name as a path parameter. */
export const pipelineNameSchema = z
  .string()
  .regex(PIPELINE_NAME_PATTERN, 'lowercase letters, digits, - and _ only, at most 63')
  .openapi({ param: { name: 'name', in: 'path' }, example: 'flight-delays' });

/** Version numbers are Postgres integers: anything larger cannot exist, and is refused as the caller's mistake. */
export const MAX_VERSION = 2_147_483_647;

/** A version number in a body. */
export const versionNumberSchema = z.number().int().min(1).max(MAX_VERSION);

/** The largest page a list answers: every list is paged, so no request makes the server read a whole table. */
export const MAX_PAGE_SIZE = 500;

/** `?limit=&offset=` of every list, in the list's stable order (by name, or newest first). */
export const pageQuerySchema = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_PAGE_SIZE)
    .default(100)
    .openapi({ param: { name: 'limit', in: 'query' }, description: `Default 100, at most ${MAX_PAGE_SIZE}.` }),
  offset: z.coerce
    .number()
    .int()
    .min(0)
    .max(1_000_000)
    .default(0)
    .openapi({ param: { name: 'offset', in: 'query' }, description: 'Items to skip. Default 0.' }),
});
