import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../core/config.js';

const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const packageJson = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  scripts: Record<string, string>;
};

describe('README', () => {
  it.each(CONFIG_VARIABLES)('documents the variable %s in the configuration table', (variable) => {
    expect(readme).toMatch(new RegExp(`^\\| \`${variable}\` +\\|`, 'm'));
  });

  it('documents no variable the configuration does not read', () => {
    // The configuration table only: other tables (docker-compose's .env secrets) name variables of other programs.
    const table = readme.split('## Configuration')[1]?.split('\n## ')[0] ?? '';
    const documented = [...table.matchAll(/^\| `([A-Z][A-Z0-9_]+)` +\|/gm)].map((m) => m[1]);
    expect(documented.length).toBeGreaterThan(30);
    expect(documented.filter((v) => !CONFIG_VARIABLES.includes(v as never))).toEqual([]);
  });

  it('quick start is two commands: bring the platform up, run the tests', () => {
    const quickStart = readme.split('## Quick start')[1]?.split('```sh')[1]?.split('```')[0] ?? '';
    const commands = quickStart
      .split('\n')
      .map((line) => line.replace(/#.*/, '').trim())
      .filter(Boolean);
    expect(commands).toEqual(['npm ci && npm start', 'npm test']);
  });

  it('every `npm run` script it mentions exists', () => {
    const mentioned = [...readme.matchAll(/npm run ([a-z:]+)/g)].map((m) => m[1]!);
    for (const script of mentioned) expect(packageJson.scripts, script).toHaveProperty(script);
  });

  it('names every top-level folder of the checkout in the layout table', () => {
    const root = new URL('../../', import.meta.url);
    const folders = fs
      .readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.') && e.name !== 'node_modules')
      .map((e) => e.name);
    const layout = readme.split('## Layout')[1] ?? '';
    const listed = [...layout.matchAll(/^\| `([a-z-]+)\/` +\|/gm)].map((m) => m[1]);
    expect(folders.filter((f) => !listed.includes(f))).toEqual([]);
  });
});
