/**
 * (About 730 lines: one normalized compose file, read once, checked service by service against the code.)
 *
 * Keeps docker-compose.yml (and the Dockerfile it builds) valid and in step with the code. There is no Docker engine
 * on our machines, so this checks what can be checked without one: `docker-compose config` (Debian's docker-compose
 * 1.29.2 validates the file against the compose schema and prints it normalized: anchors merged, variables
 * substituted), then the normalized services against core/config.ts and core/constants.ts, and that its secrets
 * come from `.env` (made from `.env.example`) with no default.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.js';
import { SEARCH_ATTRIBUTE_TYPES } from '../../core/constants.js';
import { isErrnoException } from '../../core/errors.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const composeFile = path.join(repoRoot, 'docker-compose.yml');
const envExampleFile = path.join(repoRoot, '.env.example');

/** The secrets docker-compose.yml requires (`${VAR:?...}`), as test values: the stack has no default for them. */
const SECRETS = {
  POSTGRES_PASSWORD: 'test-pg-password',
  MINIO_ROOT_PASSWORD: 'test-minio-password',
  CONNECTIONS_KEY: Buffer.alloc(32, 7).toString('base64'),
};

/** A scratch folder for env files: compose reads `--env-file`, never a developer's `.env` in the checkout. */
const scratch = mkdtempSync(path.join(os.tmpdir(), 'compose-test-'));
function envFile(name: string, text: string): string {
  const file = path.join(scratch, name);
  writeFileSync(file, text);
  return file;
}
const EMPTY_ENV_FILE = envFile('empty.env', '');

const APP_SERVICES = ['migrate', 'api', 'worker', 'training-worker'] as const;
const LONG_RUNNING_APP_SERVICES = ['api', 'worker', 'training-worker'] as const;
const REQUIRED_SERVICES = ['postgres', 'temporal', 'temporal-ui', 'temporal-setup', 'minio', ...APP_SERVICES] as const;

/** Each app service's command runs the same entry point as the package.json script named here. */
const ENTRY_POINT_SCRIPTS: Record<(typeof APP_SERVICES)[number], string> = {
  migrate: 'migrate',
  api: 'api',
  worker: 'worker',
  'training-worker': 'worker:training',
};

// ---------------------------------------------------------------------------------------------------------------------
// Running docker-compose

interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `docker-compose -f docker-compose.yml <args>` in a minimal environment (plus `vars`) with `envFile` (default:
 * an empty one) in place of the checkout's `.env`, so neither the developer's shell nor their `.env` can change
 * what the defaults resolve to.
 */
function compose(
  args: readonly string[],
  vars: Record<string, string> = {},
  envFilePath = EMPTY_ENV_FILE,
): Promise<CommandResult> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', ...vars };
  if (process.env.HOME) env.HOME = process.env.HOME;
  return new Promise((resolve, reject) => {
    execFile(
      'docker-compose',
      ['--env-file', envFilePath, '-f', composeFile, ...args],
      { cwd: repoRoot, env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && isErrnoException(error) && error.code === 'ENOENT') {
          reject(
            new Error(
              'docker-compose is not on PATH; this test validates docker-compose.yml with it. ' +
                'Install it with `apt-get install docker-compose` (Debian/Ubuntu; 1.29.2 is what we test with).',
            ),
          );
          return;
        }
        if (error && typeof error.code !== 'number') {
          reject(error);
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// A reader for the YAML that `docker-compose config` prints (PyYAML's block style), since no YAML library is a
// dependency. It reads block mappings, block sequences (indentless ones included), plain/single/double-quoted scalars
// folded over several lines, and `{}`/`[]`; anything else (anchors, tags, block scalars) throws rather than misreads.
// Scalars stay strings: `count: 1` reads as '1'.

type Yaml = string | Yaml[] | { [key: string]: Yaml };

interface Line {
  readonly indent: number;
  readonly text: string;
  readonly number: number;
}

const KEY = /^([^\s'"\-?:,[\]{}#&*!|>%@`][^:]*?|'(?:[^']|'')*'|"(?:[^"\\]|\\.)*"):(?: +(.*))?$/;

function isSequenceItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

function unquoteDouble(body: string, line: number): string {
  const simple: Record<string, string> = {
    '0': '\0',
    a: '\x07',
    b: '\b',
    t: '\t',
    '\t': '\t',
    n: '\n',
    v: '\v',
    f: '\f',
    r: '\r',
    e: '\x1b',
    ' ': ' ',
    '"': '"',
    '/': '/',
    '\\': '\\',
    N: '\u0085',
    _: '\u00a0',
    L: '\u2028',
    P: '\u2029',
  };
  return body.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_match, esc: string) => {
    if (esc.length > 1) return String.fromCodePoint(parseInt(esc.slice(1), 16));
    const out = simple[esc];
    if (out === undefined) throw new Error(`line ${line}: unknown escape \\${esc} in a double-quoted scalar`);
    return out;
  });
}

class ComposeYamlReader {
  private pos = 0;
  private readonly lines: Line[];

  constructor(source: string) {
    this.lines = source
      .split('\n')
      .map((raw, i) => ({ indent: raw.length - raw.trimStart().length, text: raw.trim(), number: i + 1 }))
      .filter((line) => line.text !== '' && !line.text.startsWith('#') && line.text !== '---');
  }

  read(): Yaml {
    if (this.lines.length === 0) return {};
    const value = this.block();
    const rest = this.lines[this.pos];
    if (rest) throw new Error(`line ${rest.number}: unexpected "${rest.text}"`);
    return value;
  }

  private block(): Yaml {
    const line = this.lines[this.pos];
    if (!line) throw new Error('unexpected end of document');
    return isSequenceItem(line.text) ? this.sequence(line.indent) : this.mapping(line.indent);
  }

  private sequence(indent: number): Yaml[] {
    const items: Yaml[] = [];
    for (let line = this.lines[this.pos]; line?.indent === indent && isSequenceItem(line.text);) {
      const rest = line.text === '-' ? '' : line.text.slice(2).trimStart();
      const restIndent = line.indent + (line.text.length - rest.length);
      if (rest === '') {
        this.pos++;
        items.push(this.block());
      } else if (isSequenceItem(rest) || (KEY.test(rest) && !/^['"]/.test(rest))) {
        // "- key: value" or "- - item": the item is a block starting on this line, at the column after the dash.
        this.lines[this.pos] = { indent: restIndent, text: rest, number: line.number };
        items.push(this.block());
      } else {
        this.pos++;
        items.push(this.scalar(rest, indent, line.number));
      }
      line = this.lines[this.pos];
    }
    return items;
  }

  private mapping(indent: number): { [key: string]: Yaml } {
    const map: { [key: string]: Yaml } = {};
    for (let line = this.lines[this.pos]; line?.indent === indent && !isSequenceItem(line.text);) {
      const match = KEY.exec(line.text);
      if (!match) throw new Error(`line ${line.number}: expected "key: value", got "${line.text}"`);
      const rawKey = match[1] ?? '';
      const key = this.scalar(rawKey, Number.POSITIVE_INFINITY, line.number);
      if (typeof key !== 'string') throw new Error(`line ${line.number}: unsupported key`);
      const rest = match[2] ?? '';
      this.pos++;
      if (rest !== '') {
        map[key] = this.scalar(rest, indent, line.number);
      } else {
        const next = this.lines[this.pos];
        const nested = next && (next.indent > indent || (next.indent === indent && isSequenceItem(next.text)));
        map[key] = nested ? this.block() : '';
      }
      line = this.lines[this.pos];
    }
    const stray = this.lines[this.pos];
    if (stray && stray.indent > indent) throw new Error(`line ${stray.number}: unexpected indentation`);
    return map;
  }

  /** A scalar starting with `first`, continued on the following lines indented deeper than `ownerIndent`. */
  private scalar(first: string, ownerIndent: number, lineNumber: number): Yaml {
    const parts = [first];
    for (let next = this.lines[this.pos]; next && next.indent > ownerIndent; next = this.lines[this.pos]) {
      parts.push(next.text);
      this.pos++;
    }
    const head = first[0];
    if (head === '&' || head === '*' || head === '!' || head === '|' || head === '>') {
      throw new Error(`line ${lineNumber}: anchors, aliases, tags and block scalars are not supported`);
    }
    if (head === "'") {
      const text = parts.join(' ');
      if (!text.endsWith("'") || text.length < 2) throw new Error(`line ${lineNumber}: unterminated quoted scalar`);
      return text.slice(1, -1).replaceAll("''", "'");
    }
    if (head === '"') {
      // A line ending in a backslash continues without a space (PyYAML's escaped line break).
      let text = parts[0] ?? '';
      for (const part of parts.slice(1))
        text = /(^|[^\\])(\\\\)*\\$/.test(text) ? text.slice(0, -1) + part : `${text} ${part}`;
      if (!text.endsWith('"') || text.length < 2) throw new Error(`line ${lineNumber}: unterminated quoted scalar`);
      return unquoteDouble(text.slice(1, -1), lineNumber);
    }
    const text = parts.join(' ');
    if (text === '{}') return {};
    if (text === '[]') return [];
    if (head === '{' || head === '[') throw new Error(`line ${lineNumber}: flow collections are not supported`);
    return text;
  }
}

function parseComposeYaml(source: string): Yaml {
  return new ComposeYamlReader(source).read();
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers over the parsed configuration

type YamlMap = { [key: string]: Yaml };

function isMap(value: Yaml | undefined): value is YamlMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asMap(value: Yaml | undefined, what: string): YamlMap {
  if (!isMap(value)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(value)}`);
  return value;
}

function asList(value: Yaml | undefined, what: string): Yaml[] {
  if (!Array.isArray(value)) throw new Error(`${what}: expected a list, got ${JSON.stringify(value)}`);
  return value;
}

function asString(value: Yaml | undefined, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what}: expected a scalar, got ${JSON.stringify(value)}`);
  return value;
}

function services(config: YamlMap): YamlMap {
  return asMap(config.services, 'services');
}

function service(config: YamlMap, name: string): YamlMap {
  return asMap(services(config)[name], `services.${name}`);
}

/** A service's environment as a plain record (compose normalizes the list form to a mapping). */
function environment(config: YamlMap, name: string): Record<string, string> {
  const env = asMap(service(config, name).environment ?? {}, `services.${name}.environment`);
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, asString(v, `services.${name}.environment.${k}`)]));
}

function command(config: YamlMap, name: string): string[] {
  return asList(service(config, name).command, `services.${name}.command`).map((c) => asString(c, 'command'));
}

/** Seconds in a compose duration such as `45s`, `1m30s` or `2m`. */
function durationSeconds(value: string): number {
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 };
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) throw new Error(`not a duration: ${value}`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] ?? 's'] ?? 1), 0);
}

/** Every environment variable name loadConfig reads: recorded by handing it an environment that logs each lookup. */
function configVariableNames(): Set<string> {
  const names = new Set<string>();
  const probe = new Proxy({} as NodeJS.ProcessEnv, {
    get(_target, key) {
      if (typeof key === 'string') names.add(key);
      return undefined;
    },
  });
  loadConfig(probe, repoRoot);
  return names;
}

// ---------------------------------------------------------------------------------------------------------------------

describe('the YAML reader used by this test', () => {
  it('reads the constructs docker-compose config prints', () => {
    const text = [
      'services:',
      '  a:',
      '    command:',
      '    - node',
      "    - 'it''s'",
      '    environment:',
      '      LONG: one two three',
      '        four',
      '      QUOTED: "no"',
      "      PORT: '3000'",
      '    deploy:',
      '      devices:',
      '      - capabilities:',
      '        - gpu',
      '        count: 1',
      '    ports:',
      '    - 127.0.0.1:9000:9000/tcp',
      '    - published: 3000',
      '      target: 3000',
      'volumes:',
      '  data: {}',
    ].join('\n');
    expect(parseComposeYaml(text)).toEqual({
      services: {
        a: {
          command: ['node', "it's"],
          environment: { LONG: 'one two three four', QUOTED: 'no', PORT: '3000' },
          deploy: { devices: [{ capabilities: ['gpu'], count: '1' }] },
          ports: ['127.0.0.1:9000:9000/tcp', { published: '3000', target: '3000' }],
        },
      },
      volumes: { data: {} },
    });
    expect(() => parseComposeYaml('a: &x 1\nb: *x')).toThrow(/anchors/);
  });
});

describe('docker-compose.yml', { timeout: 120_000 }, () => {
  /** `docker-compose config` with the defaults and the required secrets. */
  let config: YamlMap;
  /** `docker-compose config` with every credential and shared setting set. */
  let overridden: YamlMap;
  let listedServices: string[];

  const overrides = {
    POSTGRES_USER: 'platform',
    POSTGRES_PASSWORD: 'pg-s3cret-pw',
    MINIO_ROOT_USER: 'storage-admin',
    MINIO_ROOT_PASSWORD: 'minio-s3cret-pw',
    TEMPORAL_NAMESPACE: 'mlops-prod',
    S3_BUCKET: 'ml-artifacts-prod',
    LOG_LEVEL: 'debug',
  };

  /** Why `docker-compose config` could not be read (docker-compose missing, file invalid): fails every test. */
  let setupError: unknown;

  beforeAll(async () => {
    try {
      const [printed, printedOverridden, listed] = await Promise.all([
        compose(['config'], SECRETS),
        compose(['config'], { ...SECRETS, ...overrides }),
        compose(['config', '--services'], SECRETS),
      ]);
      for (const result of [printed, printedOverridden, listed]) {
        if (result.code !== 0) throw new Error(`docker-compose config failed (${result.code}):\n${result.stderr}`);
      }
      config = asMap(parseComposeYaml(printed.stdout), 'docker-compose config');
      overridden = asMap(parseComposeYaml(printedOverridden.stdout), 'docker-compose config');
      listedServices = listed.stdout.split('\n').filter((s) => s.trim() !== '');
    } catch (error) {
      setupError = error;
    }
  }, 120_000);

  // A failing beforeAll would only mark the tests skipped; a failing beforeEach fails each of them.
  beforeEach(() => {
    if (setupError) throw setupError;
  });

  it('is valid for docker-compose (`config -q` exits 0) with only the secrets set', async () => {
    const result = await compose(['config', '-q'], SECRETS);
    expect(result.stderr).not.toMatch(/variable is not set/i);
    expect(result.code, result.stderr).toBe(0);
  });

  it('refuses to start without each secret, or with it empty, and says where to set it', async () => {
    // docker-compose 1.29 stops at the first missing value: one run per secret, and one with an empty value.
    const refusals = await Promise.all([
      ...Object.keys(SECRETS).map(async (name) => {
        const without: Record<string, string> = { ...SECRETS };
        delete without[name];
        return { name, result: await compose(['config', '-q'], without) };
      }),
      compose(['config', '-q'], { ...SECRETS, POSTGRES_PASSWORD: '' }).then((result) => ({
        name: 'POSTGRES_PASSWORD',
        result,
      })),
    ]);
    for (const { name, result } of refusals) {
      expect(result.code, name).not.toBe(0);
      expect(result.stderr, name).toContain(`set ${name} in .env (see .env.example)`);
    }
  });

  it('has no default for any password, secret or key: each is required with `${VAR:?...}`', () => {
    const source = readFileSync(composeFile, 'utf8')
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('#'))
      .join('\n');
    const substitutions = [...source.matchAll(/\$\{([A-Z0-9_]+)([^}]*)\}/g)].map(([, name, rest]) => ({
      name: name ?? '',
      rest: rest ?? '',
    }));
    const secret = /PASSWORD|SECRET|_KEY$|TOKEN/;
    const secretSubstitutions = substitutions.filter((s) => secret.test(s.name));
    expect(new Set(secretSubstitutions.map((s) => s.name))).toEqual(new Set(Object.keys(SECRETS)));
    for (const { name, rest } of secretSubstitutions) expect(rest, name).toMatch(/^:\?/);
    // Nor a well-known default written out in a value.
    expect(source).not.toMatch(/minioadmin/);
    // The app's secret settings all come from those variables (core/config.ts has defaults of its own for some).
    for (const name of APP_SERVICES) {
      const app = loadConfig(environment(config, name), repoRoot);
      expect(app.s3.secretKey, name).toBe(SECRETS.MINIO_ROOT_PASSWORD);
      expect(decodeURIComponent(new URL(app.database.url ?? '').password), name).toBe(SECRETS.POSTGRES_PASSWORD);
      expect(app.dataAccess.connectionsKey, name).toBe(SECRETS.CONNECTIONS_KEY);
    }
  });

  it('takes its secrets from a .env made from .env.example, which stays out of git and the image', async () => {
    const example = readFileSync(envExampleFile, 'utf8');
    const assigned = new Map(
      example
        .split('\n')
        .map((line) => /^([A-Z0-9_]+)=(.*)$/.exec(line))
        .filter((match) => match !== null)
        .map((match) => [match[1] ?? '', match[2] ?? '']),
    );
    // Every required secret is there, empty: the example holds no secret, and used as is it starts nothing.
    for (const name of Object.keys(SECRETS)) expect(assigned.get(name), name).toBe('');
    expect([...assigned.keys()].sort()).toEqual(Object.keys(SECRETS).sort());
    expect(example).toContain('openssl rand -hex 24');
    expect((await compose(['config', '-q'], {}, envExampleFile)).code).not.toBe(0);
    // Filled in as it says, it is all compose needs.
    const filled = example.replace(
      /^([A-Z0-9_]+)=$/gm,
      (_line, name: string) => `${name}=${SECRETS[name as keyof typeof SECRETS]}`,
    );
    const result = await compose(['config', '-q'], {}, envFile('filled.env', filled));
    expect(result.code, result.stderr).toBe(0);
    const gitignore = readFileSync(path.join(repoRoot, '.gitignore'), 'utf8').split('\n');
    expect(gitignore).toContain('.env');
    expect(gitignore).toContain('!.env.example');
    expect(readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8').split('\n')).toContain('.env');
    // README's docker-compose section tells users to make it.
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## docker-compose'));
    expect(section).toContain('cp .env.example .env');
    for (const name of Object.keys(SECRETS)) expect(section, name).toContain(name);
  });

  it('defines every service of the stack', () => {
    expect(listedServices).toEqual(expect.arrayContaining([...REQUIRED_SERVICES]));
    // The reader saw what docker-compose itself lists.
    expect(Object.keys(services(config)).sort()).toEqual([...listedServices].sort());
  });

  it('publishes only the API beyond loopback: the UI, Temporal, PostgreSQL and MinIO have no platform keys', () => {
    for (const [name, definition] of Object.entries(services(config))) {
      const ports = asMap(definition, name).ports;
      if (ports === undefined) continue;
      for (const port of asList(ports, `${name}.ports`)) {
        if (name === 'api') continue;
        const hostIp = isMap(port) ? port.host_ip : asString(port, `${name}.ports`).split(':').at(-3);
        expect(hostIp, `${name} publishes ${JSON.stringify(port)}`).toBe('127.0.0.1');
      }
    }
  });

  it('pins every image it pulls', () => {
    const images = Object.fromEntries(
      Object.entries(services(config)).map(([name, s]) => [name, asString(asMap(s, name).image, `${name}.image`)]),
    );
    expect(images.postgres).toMatch(/^postgres:16(\.\d+)?(-[a-z0-9.]+)?$/);
    expect(images.temporal).toMatch(/^temporalio\/auto-setup:1\.29\.\d+$/);
    expect(images['temporal-ui']).toMatch(/^temporalio\/ui:2\.42\.\d+$/);
    expect(images['temporal-setup']).toMatch(/^temporalio\/admin-tools:1\.29\.\d+/);
    expect(images.minio).toMatch(/(^|\/)minio\/minio:RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z/);
    for (const [name, image] of Object.entries(images)) {
      expect(image, `${name} pulls an unpinned image`).not.toMatch(/:latest$/);
      expect(image, `${name} pulls an image without a tag`).toMatch(/:[^/]+$/);
    }
    // The app services all run the image built from this repository.
    const appImages = new Set(APP_SERVICES.map((name) => images[name]));
    expect(appImages.size).toBe(1);
    for (const name of APP_SERVICES) {
      const build = asMap(service(config, name).build, `${name}.build`);
      expect(asString(build.context, 'build.context')).toBe(repoRoot.replace(/\/$/, ''));
      expect(build.dockerfile).toBe('Dockerfile');
    }
  });

  it('reserves an NVIDIA GPU for the training worker, and only for it', () => {
    const devices = asList(
      asMap(
        asMap(asMap(service(config, 'training-worker').deploy, 'deploy').resources, 'deploy.resources').reservations,
        'deploy.resources.reservations',
      ).devices,
      'deploy.resources.reservations.devices',
    );
    expect(devices).toContainEqual({ driver: 'nvidia', count: '1', capabilities: ['gpu'] });
    for (const name of ['api', 'worker', 'migrate']) expect(service(config, name).deploy).toBeUndefined();
  });

  it('gives the app services only variables that core/config.ts reads, which loadConfig accepts', () => {
    const known = configVariableNames();
    expect(known).toContain('DATABASE_URL'); // the probe saw loadConfig's lookups
    for (const cfg of [config, overridden]) {
      for (const name of APP_SERVICES) {
        const env = environment(cfg, name);
        const unknown = Object.keys(env).filter((k) => !known.has(k));
        expect(unknown, `${name} sets variables core/config.ts does not read`).toEqual([]);
        expect(() => loadConfig(env, repoRoot), `${name}'s environment`).not.toThrow();
      }
    }
  });

  it('points the app services at the compose services, with one shared configuration', () => {
    const env = environment(config, 'api');
    for (const name of APP_SERVICES) expect(environment(config, name), name).toEqual(env);
    const app = loadConfig(env, repoRoot);
    expect(app.nodeEnv).toBe('production');
    expect(app.temporal.address).toBe('temporal:7233');
    expect(app.database.url).toMatch(/^postgres(ql)?:\/\/[^@]+@postgres:5432\/mlops$/);
    expect(app.s3.endpoint).toBe('http://minio:9000');
    expect(app.api.host).toBe('0.0.0.0');
    expect(app.api.port).toBe(3000);
    const ports = asList(service(config, 'api').ports, 'api.ports');
    expect(ports).toContainEqual({ published: '3000', target: String(app.api.port) });
  });

  it('uses one set of credentials and names everywhere, taken from the environment', () => {
    for (const [cfg, expected] of [
      [
        config,
        {
          user: 'mlops',
          password: SECRETS.POSTGRES_PASSWORD,
          s3User: 'mlops',
          s3Password: SECRETS.MINIO_ROOT_PASSWORD,
          ns: 'default',
        },
      ],
      [
        overridden,
        {
          user: overrides.POSTGRES_USER,
          password: overrides.POSTGRES_PASSWORD,
          s3User: overrides.MINIO_ROOT_USER,
          s3Password: overrides.MINIO_ROOT_PASSWORD,
          ns: overrides.TEMPORAL_NAMESPACE,
        },
      ],
    ] as const) {
      const postgres = environment(cfg, 'postgres');
      const temporal = environment(cfg, 'temporal');
      const minio = environment(cfg, 'minio');
      const app = loadConfig(environment(cfg, 'worker'), repoRoot);

      expect(postgres.POSTGRES_USER).toBe(expected.user);
      expect(postgres.POSTGRES_PASSWORD).toBe(expected.password);
      const url = new URL(app.database.url ?? '');
      expect(decodeURIComponent(url.username)).toBe(postgres.POSTGRES_USER);
      expect(decodeURIComponent(url.password)).toBe(postgres.POSTGRES_PASSWORD);
      expect(url.pathname).toBe(`/${postgres.POSTGRES_DB}`);

      // Temporal on the same server, in databases of its own.
      expect(temporal.DB).toBe('postgres12');
      expect(temporal.POSTGRES_SEEDS).toBe('postgres');
      expect(temporal.POSTGRES_USER).toBe(postgres.POSTGRES_USER);
      expect(temporal.POSTGRES_PWD).toBe(postgres.POSTGRES_PASSWORD);
      expect([temporal.DBNAME, temporal.VISIBILITY_DBNAME]).toEqual(['temporal', 'temporal_visibility']);
      expect(postgres.POSTGRES_DB).not.toMatch(/^temporal/);

      expect(minio.MINIO_ROOT_USER).toBe(expected.s3User);
      expect(minio.MINIO_ROOT_PASSWORD).toBe(expected.s3Password);
      expect(app.s3.accessKey).toBe(minio.MINIO_ROOT_USER);
      expect(app.s3.secretKey).toBe(minio.MINIO_ROOT_PASSWORD);

      expect(app.temporal.namespace).toBe(expected.ns);
      expect(temporal.DEFAULT_NAMESPACE).toBe(expected.ns);
      expect(environment(cfg, 'temporal-setup').TEMPORAL_NAMESPACE).toBe(expected.ns);
      expect(environment(cfg, 'temporal-ui').TEMPORAL_DEFAULT_NAMESPACE).toBe(expected.ns);
    }
    expect(loadConfig(environment(overridden, 'api'), repoRoot)).toMatchObject({
      logLevel: overrides.LOG_LEVEL,
      s3: { bucket: overrides.S3_BUCKET },
    });
  });

  it('starts services in order: databases healthy, then one-shot setup, then the app', () => {
    const dependsOn = (name: string): Record<string, string> =>
      Object.fromEntries(
        Object.entries(asMap(service(config, name).depends_on ?? {}, `${name}.depends_on`)).map(([dep, spec]) => [
          dep,
          asString(asMap(spec, `${name}.depends_on.${dep}`).condition, 'condition'),
        ]),
      );
    expect(dependsOn('temporal')).toEqual({ postgres: 'service_healthy' });
    expect(dependsOn('temporal-ui')).toEqual({ temporal: 'service_healthy' });
    expect(dependsOn('temporal-setup')).toEqual({ temporal: 'service_healthy' });
    expect(dependsOn('migrate')).toEqual({ postgres: 'service_healthy' });
    for (const name of LONG_RUNNING_APP_SERVICES) {
      expect(dependsOn(name), name).toEqual({
        postgres: 'service_healthy',
        temporal: 'service_healthy',
        minio: 'service_healthy',
        migrate: 'service_completed_successfully',
        'temporal-setup': 'service_completed_successfully',
      });
    }
    expect(service(config, 'migrate').restart).toBe('no');
    expect(service(config, 'temporal-setup').restart).toBe('no');
  });

  it('has a health check on every service that others wait for, and none where nothing answers', () => {
    const test = (name: string): string =>
      asList(asMap(service(config, name).healthcheck, `${name}.healthcheck`).test, `${name}.healthcheck.test`)
        .map((t) => asString(t, 'test'))
        .join(' ');
    expect(test('postgres')).toMatch(/pg_isready/);
    expect(test('temporal')).toMatch(/temporal operator cluster health/);
    expect(test('minio')).toMatch(/\/minio\/health\/ready/);
    // The API uses the image's HEALTHCHECK (GET /healthz); processes without an HTTP server turn it off.
    expect(service(config, 'api').healthcheck).toBeUndefined();
    for (const name of ['migrate', 'worker', 'training-worker']) expect(test(name), name).toBe('NONE');
  });

  it('runs the same entry points as the package.json scripts', () => {
    const scripts = (
      JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts;
    for (const name of APP_SERVICES) {
      const script = scripts[ENTRY_POINT_SCRIPTS[name]] ?? '';
      const entry = /^exec node --import tsx (\S+\.ts)$/.exec(script)?.[1];
      expect(entry, `package.json script ${ENTRY_POINT_SCRIPTS[name]}`).toBeDefined();
      expect(command(config, name), name).toEqual(['node', '--import', 'tsx', entry]);
    }
  });

  it('lets workers finish their shutdown grace period before Docker kills them', () => {
    for (const name of ['worker', 'training-worker']) {
      const grace = loadConfig(environment(config, name), repoRoot).worker.shutdownGraceSeconds;
      const stop = durationSeconds(asString(service(config, name).stop_grace_period, `${name}.stop_grace_period`));
      expect(stop, name).toBeGreaterThan(grace);
    }
  });

  it('registers exactly the search attributes of core/constants.ts', () => {
    const registered = Object.fromEntries(
      environment(config, 'temporal-setup')
        .SEARCH_ATTRIBUTES?.split(/\s+/)
        .filter(Boolean)
        .map((pair) => pair.split('=') as [string, string]) ?? [],
    );
    expect(registered).toEqual(SEARCH_ATTRIBUTE_TYPES);
  });

  it('mounts files that exist, where the containers look for them', () => {
    const mounts = (name: string): Array<[string, string]> =>
      asList(service(config, name).volumes ?? [], `${name}.volumes`)
        .map((v) => asString(v, 'volume').split(':'))
        .filter((parts) => parts[0]?.startsWith('/'))
        .map((parts) => [parts[0] ?? '', parts[1] ?? '']);
    const temporalMounts = mounts('temporal');
    const dynamicConfig = `/etc/temporal/${environment(config, 'temporal').DYNAMIC_CONFIG_FILE_PATH}`;
    expect(temporalMounts.map(([, target]) => target)).toContain(dynamicConfig);
    const setup = service(config, 'temporal-setup');
    const script = asList(setup.entrypoint, 'entrypoint').map((e) => asString(e, 'entrypoint'));
    expect(mounts('temporal-setup').map(([, target]) => target)).toContain(script.at(-1));
    for (const [source] of [...temporalMounts, ...mounts('temporal-setup')]) {
      expect(existsSync(source), `${source} is mounted but missing`).toBe(true);
    }
  });
});

describe('Dockerfile and .dockerignore', () => {
  const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  it('builds on node:20-bookworm-slim and installs dependencies from the lockfile before copying the sources', () => {
    expect(dockerfile).toMatch(/node:20-bookworm-slim/);
    const copyManifests = instructions.findIndex((l) => /^COPY .*package\.json.*package-lock\.json/.test(l));
    const install = instructions.findIndex((l) => /^RUN .*npm ci\b/.test(l));
    const copySources = instructions.findIndex((l) => /^COPY \.\s+\./.test(l));
    expect(copyManifests).toBeGreaterThanOrEqual(0);
    expect(install).toBeGreaterThan(copyManifests);
    expect(copySources).toBeGreaterThan(install);
    // npm 11.19+ reads package.json's allowScripts (the npm bundled with Node 20 ignores it).
    expect(dockerfile).toMatch(/npm@\$\{NPM_VERSION\}|npm@11\./);
  });

  it('runs as a non-root user, checks /healthz and starts the API by default', () => {
    const users = instructions.filter((l) => l.startsWith('USER '));
    expect(users.at(-1)).toBeDefined();
    expect(users.at(-1)).not.toMatch(/^USER (root|0)(:|$)/);
    expect(instructions.find((l) => l.startsWith('HEALTHCHECK'))).toMatch(/\/healthz/);
    expect(instructions.filter((l) => l.startsWith('CMD ')).at(-1)).toMatch(/server\/main\.ts/);
  });

  it('keeps local state out of the build context', () => {
    const ignored = readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['node_modules', '.data', '.tools', '.git', 'coverage', 'dist', '*.log']) {
      expect(ignored, entry).toContain(entry);
    }
  });
});
