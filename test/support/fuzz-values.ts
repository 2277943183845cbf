/**
 * The values of the bad-input property suite (test/integration/bad-input.test.ts): hostile JSON values and raw JSON
 * text (huge, negative and out-of-range numbers, NaN and Infinity, control characters, lone surrogates, deep
 * nesting), values derived from an OpenAPI (JSON) schema, and mutations of them. Deterministic for a seed.
 */
import fc from 'fast-check';

/** JSON text spliced into a body as it is (`1e999`, a nesting 10,000 deep), where a JS value cannot say it. */
export class RawJson {
  constructor(readonly text: string) {}
}

/** Serializes a value that may hold {@link RawJson} parts. Never recursion-deep: deep nesting is always raw. */
export function jsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).map(([key, v]) => `${JSON.stringify(key)}:${jsonText(v)}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** `depth` nested arrays or objects, as raw JSON. */
export function deeplyNested(depth: number, kind: 'array' | 'object'): RawJson {
  return kind === 'array'
    ? new RawJson(`${'['.repeat(depth)}1${']'.repeat(depth)}`)
    : new RawJson(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
}

/** Numbers a JSON parser accepts but JavaScript, zod or Postgres may not hold: overflow, underflow, > 2^53. */
const RAW_NUMBERS = [
  '1e999',
  '-1e999',
  '1e-999',
  '-0',
  '2147483648',
  '-2147483649',
  '4294967296',
  '9007199254740993',
  '18446744073709551616',
  '123456789012345678901234567890',
  '1.0000000000000000000000001',
  '1E400',
  '0.1e-400',
];

/** Numbers as JS values. */
const NUMBERS = [
  0,
  -1,
  1.5,
  -1.5,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
  Number.MIN_VALUE,
  1e21,
  1e-7,
];

/** Strings that have broken parsers, databases and regular expressions before. */
export const NASTY_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\u0001\u001f\u007f',
  '\t\r\n',
  '\u202e\u200f\u200e', // right-to-left override and marks
  '\ufeff',
  '\ud800', // lone high surrogate
  '\udfff', // lone low surrogate
  '\ud83d\ude00', // an emoji (a surrogate pair)
  'e\u0301\u0301\u0301',
  '\uffff',
  'NaN',
  'Infinity',
  '-Infinity',
  '1e999',
  '3000000000',
  '9007199254740993',
  '-1',
  '0',
  '0x10',
  'true',
  'null',
  '[]',
  '{}',
  'champion',
  '../../etc/passwd',
  '/etc/passwd',
  'file:///etc/passwd',
  "'; drop table pipelines; --",
  '"',
  '\\',
  '%00',
  '%',
  '${x}',
  '<script>alert(1)</script>',
  '*'.repeat(300),
  '(a+)+$',
  '[',
  'a'.repeat(5000),
  'x'.repeat(70_000),
  'é'.repeat(129),
];

/** A hostile string: a known one or a random one of any UTF-16 code units. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
);

/** A hostile value for any field: a wrong type, an extreme number, a hostile string, deep nesting. */
export const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: nastyString },
  { weight: 3, arbitrary: fc.constantFrom<unknown>(...NUMBERS) },
  { weight: 3, arbitrary: fc.constantFrom(...RAW_NUMBERS).map((text) => new RawJson(text)) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.bigInt().map((n) => new RawJson(String(n))) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], { '': null }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      new RawJson('{"__proto__":{"polluted":true}}'),
      new RawJson('{"constructor":{"prototype":{"polluted":true}}}'),
      new RawJson('{"a":1,"a":2}'),
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(50, 1_000, 10_000, 100_000), fc.constantFrom('array' as const, 'object' as const))
      .map(([depth, kind]) => deeplyNested(depth, kind)),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/** An OpenAPI 3.1 schema, as far as the generators read one. */
export interface JsonSchema {
  readonly $ref?: string;
  readonly type?: string | readonly string[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly anyOf?: readonly JsonSchema[];
  readonly oneOf?: readonly JsonSchema[];
  readonly allOf?: readonly JsonSchema[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | JsonSchema;
  readonly items?: JsonSchema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly format?: string;
  readonly example?: unknown;
  readonly default?: unknown;
}

/** Resolves `#/components/schemas/X` references against the document's components. */
export type SchemaResolver = (schema: JsonSchema) => JsonSchema;

/** A string matching `pattern`, or undefined when the pattern is not a JavaScript regular expression. */
function matching(pattern: string): fc.Arbitrary<string> | undefined {
  try {
    return fc.stringMatching(new RegExp(pattern));
  } catch {
    return undefined;
  }
}

function stringFor(schema: JsonSchema): fc.Arbitrary<string> {
  const fromPattern = schema.pattern === undefined ? undefined : matching(schema.pattern);
  const minLength = schema.minLength ?? 0;
  const plain =
    fromPattern ??
    (schema.format === 'uri'
      ? fc.constantFrom('postgres://user:secret@127.0.0.1:1/db', 'http://example.com/x', 's3://bucket/key')
      : fc.string({ minLength, maxLength: Math.max(minLength, Math.min(schema.maxLength ?? 24, 24)) }));
  const given = typeof schema.example === 'string' ? fc.oneof(fc.constant(schema.example), plain) : plain;
  // A free-text field (a reason, a description, an expression) gets hostile text too: NUL, RTL marks, surrogates.
  return schema.pattern === undefined && schema.enum === undefined
    ? fc.oneof({ weight: 3, arbitrary: given }, { weight: 1, arbitrary: nastyString })
    : given;
}

function numberFor(schema: JsonSchema, integer: boolean): fc.Arbitrary<number> {
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  if (integer) {
    const low = Math.max(Math.ceil(min ?? -1000) + (schema.exclusiveMinimum === undefined ? 0 : 1), -(2 ** 31));
    const high = Math.min(Math.floor(max ?? 1000) - (schema.exclusiveMaximum === undefined ? 0 : 1), 2 ** 31 - 1);
    const top = Math.max(low, high);
    // Small values first (versions 1 and 2 exist), then the bounds, then anything in range.
    return fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: low, max: Math.min(top, Math.max(low, 0) + 3) }) },
      { weight: 1, arbitrary: fc.constantFrom(low, top) },
      { weight: 1, arbitrary: fc.integer({ min: low, max: top }) },
    );
  }
  return fc.double({
    min: min ?? -1000,
    max: max ?? 1000,
    minExcluded: schema.exclusiveMinimum !== undefined,
    maxExcluded: schema.exclusiveMaximum !== undefined,
    noNaN: true,
  });
}

/**
 * Values shaped by `schema`: every required property, some optional ones, enums from their members, strings from
 * their patterns. They pass the schema's shape more often than not, so a mutation of them reaches the handler.
 */
export function fromSchema(schema: JsonSchema, resolve: SchemaResolver, depth = 0): fc.Arbitrary<unknown> {
  const s = resolve(schema);
  if (depth > 6) return fc.constant(null);
  if (s.const !== undefined) return fc.constant(s.const);
  if (s.enum && s.enum.length > 0) return fc.constantFrom(...s.enum);
  const choices = s.anyOf ?? s.oneOf;
  if (choices && choices.length > 0) return fc.oneof(...choices.map((c) => fromSchema(c, resolve, depth + 1)));
  if (s.allOf?.[0]) return fromSchema(s.allOf[0], resolve, depth + 1);
  const types = typeof s.type === 'string' ? [s.type] : (s.type ?? []);
  if (types.length > 1) return fc.oneof(...types.map((type) => fromSchema({ ...s, type }, resolve, depth)));
  switch (types[0]) {
    case 'object': {
      const properties = Object.entries(s.properties ?? {});
      if (properties.length === 0 && typeof s.additionalProperties === 'object') {
        return fc.dictionary(fc.string({ maxLength: 8 }), fromSchema(s.additionalProperties, resolve, depth + 1), {
          maxKeys: 3,
        });
      }
      const shape = Object.fromEntries(properties.map(([key, p]) => [key, fromSchema(p, resolve, depth + 1)]));
      return fc.record(shape, { requiredKeys: (s.required ?? []).filter((key) => key in shape) });
    }
    case 'array':
      return fc.array(s.items ? fromSchema(s.items, resolve, depth + 1) : fc.jsonValue({ maxDepth: 1 }), {
        minLength: Math.min(s.minItems ?? 0, 3),
        maxLength: Math.min(s.maxItems ?? 3, 3),
      });
    case 'string':
      return stringFor(s);
    case 'integer':
      return numberFor(s, true);
    case 'number':
      return numberFor(s, false);
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    default:
      return s.example !== undefined ? fc.constant(s.example) : fc.jsonValue({ maxDepth: 2 });
  }
}

type Mutation =
  | { readonly op: 'replace'; readonly at: number; readonly value: unknown }
  | { readonly op: 'text'; readonly at: number; readonly value: string }
  | { readonly op: 'delete'; readonly at: number }
  | { readonly op: 'add'; readonly at: number; readonly key: string; readonly value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('replace' as const), at: fc.nat(), value: nastyValue }) },
  // A string field keeps its type but not its sense: NUL, RTL marks, surrogates, 70,000 characters.
  { weight: 4, arbitrary: fc.record({ op: fc.constant('text' as const), at: fc.nat(), value: nastyString }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      at: fc.nat(),
      key: fc.oneof(nastyString, fc.constantFrom('__proto__', 'constructor', 'extra')),
      value: nastyValue,
    }),
  },
);

/** The paths of every value inside `value` (the root first), as key lists. */
function paths(value: unknown, prefix: readonly (string | number)[] = []): (string | number)[][] {
  const own = [[...prefix]];
  if (value instanceof RawJson || typeof value !== 'object' || value === null) return own;
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return own.concat(...entries.map(([key, v]) => paths(v, [...prefix, key])));
}

/** A copy of `value` with the value at `path` replaced (or removed when `replacement` is `DELETE`). */
const DELETE = Symbol('delete');
function replaceAt(value: unknown, path: readonly (string | number)[], replacement: unknown): unknown {
  const [head, ...rest] = path;
  if (head === undefined) return replacement;
  if (Array.isArray(value)) {
    const copy = [...(value as unknown[])];
    const next = replaceAt(copy[head as number], rest, replacement);
    if (next === DELETE) copy.splice(head as number, 1);
    else copy[head as number] = next;
    return copy;
  }
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  const next = replaceAt(copy[head], rest, replacement);
  if (next === DELETE) delete copy[head];
  else Object.defineProperty(copy, head, { value: next, enumerable: true, writable: true, configurable: true });
  return copy;
}

function applyMutation(value: unknown, m: Mutation): unknown {
  const all = paths(value);
  const path = all[m.at % all.length] ?? [];
  if (m.op === 'replace') return replaceAt(value, path, m.value);
  if (m.op === 'text') {
    const strings = all.filter((p) => typeof p.reduce<unknown>((v, key) => (v as never)[key], value) === 'string');
    return replaceAt(value, strings[m.at % Math.max(strings.length, 1)] ?? path, m.value);
  }
  if (m.op === 'delete') return path.length === 0 ? undefined : replaceAt(value, path, DELETE);
  // add: a new key on the object at (or above) the path, or the value itself when there is no object.
  for (let n = path.length; n >= 0; n--) {
    const at = path.slice(0, n);
    const target = at.reduce<unknown>((v, key) => (v as Record<string | number, unknown>)[key], value);
    if (typeof target === 'object' && target !== null && !Array.isArray(target) && !(target instanceof RawJson)) {
      return replaceAt(value, [...at, m.key], m.value);
    }
  }
  return m.value;
}

/** `base` with one to three fields replaced by hostile values, deleted, or joined by unknown fields. */
export function mutated(base: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc
    .tuple(base, fc.array(mutation, { minLength: 1, maxLength: 3 }))
    .map(([value, mutations]) => mutations.reduce(applyMutation, value));
}
