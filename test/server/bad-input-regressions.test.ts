/**
 * The 500s the bad-input property suite (test/integration/bad-input.test.ts) found, each pinned by the request that
 * found it. The stores here throw if touched: each request must be refused by validation, before the database
 * (where it was a query error, so a 500) sees it.
 */
import { describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import type { ErrorBody } from '../../server/errors.js';
import { findUnstorableText } from '../../server/storable-text.js';
import { ServingMetrics } from '../../serving/metrics.js';
import { syntheticDefinition } from '../support/pipelines.js';
import { testDeps } from './helpers.js';

/** A store whose every method fails the test: the request must never reach it. */
function untouchable<T>(name: string): T {
  return new Proxy(
    {},
    {
      get: (_, method) =>
        method === 'then'
          ? undefined
          : () => {
              throw new Error(`${name}.${String(method)} must not be called for this request`);
            },
    },
  ) as T;
}

function appWithStores() {
  return createApp(
    testDeps({
      bodyLimitBytes: 1_048_576,
      stores: {
        artifacts: untouchable('artifacts'),
        metadata: untouchable('metadata'),
        datasets: untouchable('datasets'),
        pipelines: untouchable('pipelines'),
        registry: untouchable('registry'),
        deployments: untouchable('deployments'),
      },
      serving: { pool: untouchable('pool'), metrics: new ServingMetrics({ defaultMetrics: false }) },
    }),
  );
}

async function send(method: string, url: string, body?: string): Promise<{ status: number; body: ErrorBody }> {
  const response = await appWithStores().request(url, {
    method,
    ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }),
  });
  return { status: response.status, body: (await response.json()) as ErrorBody };
}

describe('bad input that was a 500 (found by the property suite)', () => {
  it('POST /v1/models/a%00b/predict: a NUL in the name is a 400, not a database error', async () => {
    const { status, body } = await send('POST', '/v1/models/a%00b/predict', '{"instance":{"x":1}}');
    expect(status).toBe(400);
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toContain('path.name');
  });

  it('DELETE /v1/deployments/{name}/shadows/3000000000: a version above 2^31-1 is a 400, not an integer overflow', async () => {
    const { status, body } = await send('DELETE', '/v1/deployments/flights/shadows/3000000000');
    expect(status).toBe(400);
    expect(body.error.message).toContain('path.version');
  });

  it('POST /v1/pipelines: a NUL or an unpaired surrogate anywhere in a definition is a 400 naming the field', async () => {
    const definition = syntheticDefinition('flights', '/data/events.csv');
    const cases: [unknown, string][] = [
      [{ ...definition, description: 'a\u0000b' }, 'description'],
      [{ ...definition, split: { kind: 'hash', key: 'x', evalFraction: 0.3, seed: 'a\u0000' } }, 'split.seed'],
      [
        { ...definition, features: [...definition.features, { name: 'z', expression: "'\ud800'" }] },
        'features.2.expression',
      ],
      [{ ...definition, trainer: { kind: 'logistic_regression', params: { '\udfffC': 1 } } }, 'trainer.params.\udfffC'],
    ];
    for (const [body, path] of cases) {
      const answer = await send('POST', '/v1/pipelines', JSON.stringify(body));
      expect(answer.status, path).toBe(400);
      expect(answer.body.error.code).toBe('invalid_definition');
      expect((answer.body.error.details as { issues: { path: string }[] }).issues[0]?.path).toBe(path);
    }
  });

  it('POST /v1/deployments/{name}/rollouts: a NUL in the reason is a 400 naming body.reason', async () => {
    const { status, body } = await send(
      'POST',
      '/v1/deployments/flights/rollouts',
      JSON.stringify({ strategy: 'replace', version: 2, reason: 'rollback\u0000' }),
    );
    expect(status).toBe(400);
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toContain('body.reason');
  });
});

describe('findUnstorableText', () => {
  it('finds NUL characters and unpaired surrogates in strings and keys, and passes whole surrogate pairs', () => {
    expect(findUnstorableText({ a: ['ok', 'emoji \ud83d\ude00', { b: 'RTL \u202e' }] })).toBeUndefined();
    expect(findUnstorableText({ a: ['ok', { b: 'x\u0000' }] })).toMatchObject({ path: 'a[1].b', keys: ['a', 1, 'b'] });
    expect(findUnstorableText(['\ud83d'])).toMatchObject({ path: '[0]' });
    expect(findUnstorableText({ '\ude00': 1 })?.path).toBe('\ude00');
    expect(findUnstorableText('\u0000')?.path).toBe('');
  });

  it('walks a value nested 100,000 levels deep in linear time, without overflowing the stack, and cuts the path', () => {
    let deep: unknown = 'a\u0000';
    for (let i = 0; i < 100_000; i++) deep = { a: [deep] };
    const started = performance.now();
    const found = findUnstorableText(deep);
    expect(found?.path).toMatch(/^a\[0\]\.a\[0\]\..*…$/);
    expect(found?.keys).toHaveLength(33);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
