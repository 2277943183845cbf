import { describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { testDeps } from './helpers.js';

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  servers: { url: string }[];
  paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
  components?: { schemas?: Record<string, unknown> };
}

/** Every `$ref` in the document, so the test can check that each points at something that exists. */
function refs(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v) => refs(v, found));
  else if (value && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      if (key === '$ref' && typeof v === 'string') found.push(v);
      else refs(v, found);
    }
  }
  return found;
}

describe('GET /openapi.json', () => {
  it('describes the API, its server and the health routes', async () => {
    const res = await createApp(testDeps()).request('http://api.example:8080/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await res.json()) as OpenApiDocument;

    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: 'temporal-mlops API', version: '1.2.3-test' });
    expect(doc.servers).toEqual([{ url: 'http://api.example:8080' }]);
    expect(Object.keys(doc.paths).sort()).toEqual(['/healthz', '/readyz']);
    expect(Object.keys(doc.paths['/healthz']?.get?.responses ?? {})).toEqual(['200']);
    expect(Object.keys(doc.paths['/readyz']?.get?.responses ?? {}).sort()).toEqual(['200', '503']);

    for (const ref of refs(doc)) {
      const name = ref.replace('#/components/schemas/', '');
      expect(ref.startsWith('#/components/schemas/'), ref).toBe(true);
      expect(doc.components?.schemas?.[name], ref).toBeDefined();
    }
  });
});

describe('GET /docs', () => {
  it('serves a Swagger UI page that loads local assets and the OpenAPI document', async () => {
    const app = createApp(testDeps());
    const res = await app.request('/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain('/docs/assets/swagger-ui-bundle.js');
    expect(html).toContain('/docs/assets/swagger-ui.css');
    expect(html).not.toMatch(/https?:\/\//);

    const init = await app.request('/docs/init.js');
    expect(init.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await init.text()).toContain('"/openapi.json"');
  });

  it('serves Swagger UI assets from node_modules with their content types', async () => {
    const app = createApp(testDeps());
    const js = await app.request('/docs/assets/swagger-ui-bundle.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await js.text()).length).toBeGreaterThan(100_000);

    const css = await app.request('/docs/assets/swagger-ui.css');
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
  });

  it('serves nothing else from the package', async () => {
    const app = createApp(testDeps());
    for (const path of [
      '/docs/assets/package.json',
      '/docs/assets/swagger-ui.js.map',
      '/docs/assets/..%2F..%2Fpackage.json',
    ]) {
      const res = await app.request(path);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
  });
});
