import fs from 'node:fs';

/** The platform's version, from package.json (one source of truth for /healthz, OpenAPI and the registry). */
export const PLATFORM_VERSION: string = (
  JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
