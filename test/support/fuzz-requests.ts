/**
 * Requests of the bad-input property suite, built from the app's own OpenAPI document: every operation it lists is
 * fuzzed (a new route needs no change here) with hostile path parameters, query strings, headers, bodies and
 * content types. See fuzz-values.ts for the values.
 */
import fc from 'fast-check';
import {
  deeplyNested,
  fromSchema,
  jsonText,
  mutated,
  NASTY_STRINGS,
  nastyString,
  nastyValue,
  type JsonSchema,
  type SchemaResolver,
} from './fuzz-values.js';

/** A parameter of an operation, as the document declares it. */
export interface OperationParameter {
  readonly name: string;
  readonly in: 'path' | 'query' | 'header' | 'cookie';
  readonly required: boolean;
  readonly schema: JsonSchema;
}

/** One method on one path of the document. */
export interface Operation {
  /** `POST /v1/pipelines/{name}/runs`: the method and the path template. */
  readonly key: string;
  readonly method: string;
  readonly path: string;
  readonly parameters: readonly OperationParameter[];
  /** The JSON body's schema, when the operation takes one. */
  readonly body?: JsonSchema | undefined;
}

export interface OpenApiDocument {
  readonly paths: Record<string, Record<string, { parameters?: OperationParameter[]; requestBody?: unknown }>>;
  readonly components?: { readonly schemas?: Record<string, JsonSchema> };
}

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'options', 'head']);

/** Every operation of the document, in its order. */
export function operationsOf(doc: OpenApiDocument): Operation[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.has(method))
      .map(([method, op]) => {
        const content = (op.requestBody as { content?: Record<string, { schema?: JsonSchema }> } | undefined)?.content;
        return {
          key: `${method.toUpperCase()} ${path}`,
          method: method.toUpperCase(),
          path,
          parameters: op.parameters ?? [],
          body: content?.['application/json']?.schema,
        };
      }),
  );
}

/** Follows `$ref`s into the document's components. */
export function resolverOf(doc: OpenApiDocument): SchemaResolver {
  const resolve: SchemaResolver = (schema) => {
    if (!schema.$ref) return schema;
    const name = schema.$ref.replace('#/components/schemas/', '');
    const target = doc.components?.schemas?.[name];
    if (!target) throw new Error(`unresolved schema reference ${schema.$ref}`);
    return resolve(target);
  };
  return resolve;
}

/** A request as `app.request` takes it, with a label of what kind of body it carries (for the summary). */
export interface FuzzRequest {
  readonly operation: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body?: string | undefined;
  readonly bodyKind: string;
}

/** Percent-encodes any string, lone surrogates included (as the invalid UTF-8 a raw client could send). */
export function encodeAny(value: string): string {
  let out = '';
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (code >= 0xd800 && code <= 0xdfff) {
      out += [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)]
        .map((b) => `%${b.toString(16).toUpperCase()}`)
        .join('');
    } else {
      out += encodeURIComponent(char);
    }
  }
  return out;
}

/** Path segments as a raw client may send them: malformed escapes, dot segments, encoded slashes, overlong UTF-8. */
const RAW_SEGMENTS = ['%', '%zz', '%00', '%C0%AF', '%FF', '%ED%A0%80', '%2e%2e', '..', '.', 'a%2Fb', '%E2%80%AE', ';'];

/** Numbers as path or query text: out of range, not integers, not numbers at all. */
const NUMBER_TEXTS = [
  '0',
  '-1',
  '1.5',
  '2147483647',
  '2147483648',
  '3000000000',
  '4294967296',
  '9007199254740993',
  '1e999',
  '1e3',
  'NaN',
  'Infinity',
  '-Infinity',
  '0x10',
  ' 1',
  '00001',
  '+1',
  '1_000',
  '\u0661', // an Arabic-Indic digit one
  '123456789012345678901234567890',
];

/** A path segment or query value: a valid one when `valid` has any, or a hostile one, encoded for the URL. */
function segment(valid: readonly string[]): fc.Arbitrary<string> {
  const hostile = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...NUMBER_TEXTS).map(encodeAny) },
    { weight: 4, arbitrary: nastyString.filter((s) => s.length > 0 && s.length < 6000).map(encodeAny) },
    { weight: 1, arbitrary: fc.constantFrom(...RAW_SEGMENTS) },
  );
  return valid.length > 0
    ? fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...valid).map(encodeAny) }, { weight: 3, arbitrary: hostile })
    : hostile;
}

/** A header value a client can send: bytes 0x20–0xFF (Latin-1) and tabs, with the hostile ones among them. */
const headerValue: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...NASTY_STRINGS.filter((s) => /^[\t\x20-\xff]*$/.test(s) && s.length < 8000)),
  fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 300 }),
  fc.constantFrom('x'.repeat(201), 'é', '\xa0', '\xff\xfe'),
);

const CONTENT_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'APPLICATION/JSON',
  'application/merge-patch+json',
  'application/octet-stream',
  'application/json; charset=iso-8859-1',
  '',
  'json',
];

/** Bodies that are not JSON, or not quite. */
const MALFORMED = [
  '',
  '{',
  '[1,2',
  '{"a":}',
  "{'a':1}",
  '{"version": NaN}',
  '{"version": Infinity}',
  '{"version": -Infinity}',
  '{"a":1,}',
  '[1,]',
  'undefined',
  '\u0000',
  '\ufeff{}',
  '{"a":"\\ud800"}',
  '{"a":"\\u0000"}',
  '{"a":"\\x00"}',
  '0x10',
  '01',
  '.5',
  '"\u0000"',
  'null',
  'true',
  '1e999',
  '"a"',
  '{}garbage',
];

/** What the suite knows about the seeded state: valid values per path parameter name, example bodies per operation. */
export interface FuzzContext {
  readonly resolve: SchemaResolver;
  /** Valid values by path parameter name (`name`, `runId`, `version`, ...), so some requests reach real rows. */
  readonly knownParams: Readonly<Record<string, readonly string[]>>;
  /**
   * Valid values for some operations' path parameters, in place of `knownParams`: by a part of the operation key
   * (`/v1/deployments/`, `POST /v1/runs/{runId}/resume`; the longest that matches wins), then by name.
   */
  readonly knownParamsOf?: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>>;
  /** Bodies that are (or were) valid for an operation, by its key: mutations of them reach deep validation. */
  readonly exampleBodies: Readonly<Record<string, readonly unknown[]>>;
  /** Operations whose valid requests start workflows: they get valid bodies rarely. */
  readonly expensive: ReadonlySet<string>;
  /** The API's body limit: oversized bodies are just above it. */
  readonly bodyLimitBytes: number;
}

/** A JSON body for `op`: valid, mutated, random, malformed, deeply nested or oversized. */
function bodyFor(op: Operation, ctx: FuzzContext): fc.Arbitrary<{ kind: string; text: string | undefined }> {
  const examples = ctx.exampleBodies[op.key] ?? [];
  const shaped: fc.Arbitrary<unknown> = op.body
    ? examples.length > 0
      ? fc.oneof(fc.constantFrom(...examples), fromSchema(op.body, ctx.resolve))
      : fromSchema(op.body, ctx.resolve)
    : fc.jsonValue({ maxDepth: 2 });
  const as = (kind: string) => (value: unknown) => ({ kind, text: jsonText(value) });
  const oversized = fc
    .tuple(fc.integer({ min: 1, max: 3 * ctx.bodyLimitBytes }), fc.constantFrom('string', 'array'))
    .map(([extra, shape]) => {
      const size = ctx.bodyLimitBytes + extra;
      const text = shape === 'string' ? JSON.stringify({ pad: 'x'.repeat(size) }) : `[${'1,'.repeat(size / 2)}1]`;
      return { kind: 'oversized', text };
    });
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant({ kind: 'none', text: undefined }) },
    { weight: ctx.expensive.has(op.key) ? 2 : 12, arbitrary: shaped.map(as('valid-ish')) },
    { weight: 30, arbitrary: mutated(shaped).map(as('mutated')) },
    { weight: 8, arbitrary: fc.oneof(fc.jsonValue(), nastyValue).map(as('random')) },
    { weight: 8, arbitrary: fc.constantFrom(...MALFORMED).map((text) => ({ kind: 'malformed', text })) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom(1_000, 10_000, 100_000), fc.constantFrom('array' as const, 'object' as const))
        .map(([depth, kind]) => ({ kind: 'deep', text: deeplyNested(depth, kind).text })),
    },
    { weight: 2, arbitrary: oversized },
  );
}

/** A query string: the operation's parameters with valid or hostile values, unknown keys, repeated keys. */
function queryFor(op: Operation, ctx: FuzzContext): fc.Arbitrary<string> {
  const declared = op.parameters.filter((p) => p.in === 'query');
  const pairs = declared.map((p) => {
    const valid = [
      ...((p.schema.enum ?? []) as unknown[]).map(String),
      ...(typeof p.schema.example === 'string' || typeof p.schema.example === 'number'
        ? [String(p.schema.example)]
        : []),
      ...(ctx.knownParams[p.name] ?? []),
      '1',
      '10',
    ];
    return fc.option(
      segment(valid).map((v) => `${p.name}=${v}`),
      { nil: undefined, freq: 2 },
    );
  });
  const unknown = fc.array(
    fc.tuple(segment([]), segment([])).map(([k, v]) => `${k}=${v}`),
    { maxLength: 2 },
  );
  const repeated = declared.length > 0 ? fc.constantFrom(...declared.map((p) => `${p.name}=1&${p.name}=2`)) : undefined;
  return fc
    .tuple(
      fc.tuple(...pairs),
      unknown,
      repeated ? fc.option(repeated, { nil: undefined, freq: 4 }) : fc.constant(undefined),
    )
    .map(([given, extra, twice]) => {
      const all = [...given.filter((x): x is string => x !== undefined), ...extra, ...(twice ? [twice] : [])];
      return all.length > 0 ? `?${all.join('&')}` : '';
    });
}

/** Hostile requests for one operation. */
export function requestsFor(op: Operation, ctx: FuzzContext): fc.Arbitrary<FuzzRequest> {
  const pathParams = op.parameters.filter((p) => p.in === 'path');
  const specific = (name: string) =>
    Object.entries(ctx.knownParamsOf ?? {})
      .filter(([part, values]) => op.key.includes(part) && values[name] !== undefined)
      .sort(([a], [b]) => b.length - a.length)[0]?.[1][name];
  const validValues = pathParams.map((p) => [
    ...(specific(p.name) ?? ctx.knownParams[p.name] ?? []),
    ...(typeof p.schema.example === 'string' || typeof p.schema.example === 'number' ? [String(p.schema.example)] : []),
  ]);
  // Half the requests name real rows in every path parameter, so their bodies reach the handler; half mix in hostile
  // segments.
  const segments = fc.oneof(
    fc.tuple(
      ...validValues.map((valid) => (valid.length > 0 ? fc.constantFrom(...valid).map(encodeAny) : segment([]))),
    ),
    fc.tuple(...validValues.map(segment)),
  );
  const headerParams = op.parameters.filter((p) => p.in === 'header');
  const headers = fc.tuple(
    ...headerParams.map((p) =>
      fc.option(
        headerValue.map((v) => [p.name, v] as const),
        { nil: undefined },
      ),
    ),
  );
  const contentType = fc.oneof(
    { weight: 8, arbitrary: fc.constant('application/json') },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.constantFrom(...CONTENT_TYPES) },
  );
  return fc
    .record({
      segments,
      query: queryFor(op, ctx),
      headers,
      contentType,
      body: bodyFor(op, ctx),
      declareLength: fc.boolean(),
    })
    .map(({ segments: values, query, headers: given, contentType: type, body: maybeBody, declareLength }) => {
      // Fetch refuses a GET or HEAD with a body, and so does every HTTP client that could reach the API.
      const body = op.method === 'GET' || op.method === 'HEAD' ? { kind: 'none', text: undefined } : maybeBody;
      let path = op.path;
      pathParams.forEach((p, i) => {
        path = path.replace(`{${p.name}}`, values[i] ?? '');
      });
      const all: Record<string, string> = {};
      for (const pair of given) if (pair) all[pair[0]] = pair[1];
      if (body.text !== undefined && type !== undefined) all['content-type'] = type;
      if (body.text !== undefined && declareLength) all['content-length'] = String(Buffer.byteLength(body.text));
      const request: FuzzRequest = {
        operation: op.key,
        method: op.method,
        url: `${path}${query}`,
        headers: all,
        body: body.text,
        bodyKind: body.text === undefined ? 'none' : body.kind,
      };
      // fast-check prints a counterexample with this: clipped, since a body can be megabytes.
      return Object.assign(request, { [fc.toStringMethod]: () => describeRequest(request) });
    });
}

/** A shortened description of a request for a failure message (bodies can be megabytes). */
export function describeRequest(request: FuzzRequest): string {
  const clip = (s: string) => (s.length > 400 ? `${s.slice(0, 400)}… (${s.length} chars)` : s);
  return `${request.method} ${clip(request.url)} headers=${clip(JSON.stringify(request.headers))} body[${request.bodyKind}]=${clip(JSON.stringify(request.body) ?? 'none')}`;
}
