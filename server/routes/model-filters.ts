/**
 * The registry's search parameters (`GET /v1/models?tag=&prefix=`, `GET /v1/models/{name}/versions?status=&alias=&
 * tag=&metric=`) and what they become: the store's filters (storage/registry-search.ts). A malformed filter is a 400
 * naming the parameter and the value, through the router's validation hook.
 */
import { z } from '@hono/zod-openapi';
import { MODEL_VERSION_STATUSES } from '../../schema/index.js';
import { ALIAS_PATTERN } from '../../storage/registry-aliases.js';
import { MAX_TAG_VALUE_LENGTH, TAG_KEY_PATTERN } from '../../storage/registry-edits.js';
import {
  METRIC_OPERATORS,
  type MetricFilter,
  type MetricOperator,
  type ModelFilter,
  type TagFilter,
  type VersionFilter,
} from '../../storage/registry-search.js';
import { pageQuerySchema } from './common.js';

/** Filters of one kind a request may repeat (all must hold). */
const MAX_FILTERS = 20;

/** A value, or the problem with it. */
type Parsed<T> = { readonly value: T } | { readonly problem: string };

function parseTag(text: string): Parsed<TagFilter> {
  const colon = text.indexOf(':');
  const key = colon === -1 ? text : text.slice(0, colon);
  const value = colon === -1 ? undefined : text.slice(colon + 1);
  if (!TAG_KEY_PATTERN.test(key)) {
    return { problem: `${JSON.stringify(text)}: the key must be letters, digits and _./- (at most 64), then :value` };
  }
  if (value !== undefined && value.length > MAX_TAG_VALUE_LENGTH) {
    return { problem: `${JSON.stringify(key)}: the value is longer than ${MAX_TAG_VALUE_LENGTH} characters` };
  }
  return { value: { key, value } };
}

// Longest operators first, so `>=` is never read as `>` followed by `=0.7`.
const METRIC_FILTER = /^\s*([A-Za-z_][A-Za-z0-9_.\-/]{0,127})\s*(>=|<=|>|<|=)\s*(\S+)\s*$/;
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function parseMetric(text: string): Parsed<MetricFilter> {
  const match = METRIC_FILTER.exec(text);
  const bad = `${JSON.stringify(text)} is not \`name op value\` with op one of ${METRIC_OPERATORS.join(' ')} (auc>=0.7)`;
  if (!match) return { problem: bad };
  const [, name, operator, number] = match;
  const value = Number(number);
  if (!DECIMAL.test(number!) || !Number.isFinite(value)) {
    return { problem: `${JSON.stringify(text)}: ${JSON.stringify(number)} is not a finite number` };
  }
  return { value: { name: name!, operator: operator as MetricOperator, value } };
}

const asList = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** A repeatable query parameter whose every value must parse. */
function repeatable<T>(name: string, parse: (text: string) => Parsed<T>, description: string, example: string) {
  return z
    .union([z.string(), z.array(z.string())])
    .optional()
    .superRefine((raw, ctx) => {
      const values = asList(raw);
      if (values.length > MAX_FILTERS) {
        ctx.addIssue({ code: 'custom', message: `at most ${MAX_FILTERS} ${name} filters` });
        return;
      }
      for (const text of values) {
        const parsed = parse(text);
        if ('problem' in parsed) ctx.addIssue({ code: 'custom', message: parsed.problem });
      }
    })
    .openapi({
      param: { name, in: 'query' },
      description: `${description} Repeat it for more (all must hold).`,
      example,
    });
}

/** Every value of a validated parameter, parsed. */
function parseAll<T>(raw: string | string[] | undefined, parse: (text: string) => Parsed<T>): T[] {
  return asList(raw).map((text) => {
    const parsed = parse(text);
    if ('problem' in parsed) throw new Error(`a validated filter did not parse: ${parsed.problem}`);
    return parsed.value;
  });
}

const tagParam = repeatable(
  'tag',
  parseTag,
  '`key:value`: the tag has that value; `key` alone: the tag is set.',
  'team:ops',
);

export const modelListQuerySchema = pageQuerySchema.extend({
  tag: tagParam,
  prefix: z
    .string()
    .max(128)
    .regex(/^[A-Za-z0-9._-]*$/, 'letters, digits and ._- only (a model name’s characters)')
    .optional()
    .openapi({ param: { name: 'prefix', in: 'query' }, description: 'Models whose name starts with this.' }),
});

export const versionListQuerySchema = pageQuerySchema.extend({
  status: z
    .enum(MODEL_VERSION_STATUSES)
    .optional()
    .openapi({ param: { name: 'status', in: 'query' }, description: 'Versions in this status.' }),
  alias: z
    .string()
    .regex(ALIAS_PATTERN, 'an alias: a letter, then letters, digits and ._- (at most 64)')
    .optional()
    .openapi({ param: { name: 'alias', in: 'query' }, description: 'The version this alias names.' }),
  tag: tagParam,
  metric: repeatable(
    'metric',
    parseMetric,
    '`name op value` with op one of `>=` `<=` `>` `<` `=`: the version’s metric compares so (versions without it ' +
      'never match).',
    'auc>=0.7',
  ),
});

export function modelFilterOf(query: z.infer<typeof modelListQuerySchema>): ModelFilter {
  return { namePrefix: query.prefix || undefined, tags: parseAll(query.tag, parseTag) };
}

export function versionFilterOf(query: z.infer<typeof versionListQuerySchema>): VersionFilter {
  return {
    status: query.status,
    alias: query.alias,
    tags: parseAll(query.tag, parseTag),
    metrics: parseAll(query.metric, parseMetric),
  };
}
