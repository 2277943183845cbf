import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Hono } from 'hono';
import type { AppEnv } from '../context.js';

export interface DocsOptions {
  /** URL of the OpenAPI document the page loads. Default `/openapi.json`. */
  readonly specUrl?: string;
  /** Where this sub-app is mounted; the page's asset URLs start with it. Default `/docs`. */
  readonly basePath?: string;
  readonly title?: string;
}

/** The only files served from swagger-ui-dist: the page needs nothing else, and the folder holds source maps. */
const assets: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

function swaggerUiDir(): string {
  return path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * A Swagger UI page for the API that works offline: `GET {basePath}` is the page, `GET {basePath}/assets/:file`
 * serves Swagger UI from the installed `swagger-ui-dist` package (no CDN), and `GET {basePath}/init.js` points it at
 * the OpenAPI document. The initialiser is a file rather than an inline script so a strict Content-Security-Policy
 * can be added without exceptions.
 *
 * @throws Error when `swagger-ui-dist` is not installed.
 */
export function docs(options: DocsOptions = {}): Hono<AppEnv> {
  const specUrl = options.specUrl ?? '/openapi.json';
  const base = options.basePath ?? '/docs';
  const title = escapeHtml(options.title ?? 'temporal-mlops API');
  const dir = swaggerUiDir();
  // Read once per file and kept: the bundle is 1.7 MB and never changes while the process runs.
  const cache = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();

  const page = `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${title}</title>
    <link rel="stylesheet" href="${base}/assets/swagger-ui.css" />
    <link rel="icon" type="image/png" href="${base}/assets/favicon-32x32.png" sizes="32x32" />
    <link rel="icon" type="image/png" href="${base}/assets/favicon-16x16.png" sizes="16x16" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="${base}/assets/swagger-ui-bundle.js"></script>
    <script src="${base}/assets/swagger-ui-standalone-preset.js"></script>
    <script src="${base}/init.js"></script>
  </body>
</html>
`;
  const init = `window.ui = SwaggerUIBundle({
  url: ${JSON.stringify(specUrl)},
  dom_id: '#swagger-ui',
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: 'StandaloneLayout',
});
`;

  return new Hono<AppEnv>()
    .get('/', (c) => c.html(page))
    .get('/init.js', (c) => c.body(init, 200, { 'content-type': 'text/javascript; charset=utf-8' }))
    .get('/assets/:file', async (c) => {
      const file = c.req.param('file');
      const contentType = Object.hasOwn(assets, file) ? assets[file] : undefined;
      if (contentType === undefined) return c.notFound();
      let bytes = cache.get(file);
      if (!bytes) {
        bytes = readFile(path.join(dir, file)).then((b) => new Uint8Array(b));
        cache.set(file, bytes);
        // A failed read must not stay cached; the next request tries again.
        bytes.catch(() => cache.delete(file));
      }
      return c.body(await bytes, 200, {
        'content-type': contentType,
        'cache-control': 'public, max-age=86400',
      });
    });
}
