import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readOrCreateSecret } from '../../core/secret-file.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'secret-file-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('readOrCreateSecret', () => {
  it('writes the secret once, private, and reads it back', async () => {
    const file = path.join(root, 'a', 'secrets', 'token');
    let made = 0;
    const make = () => `secret-${++made}`;
    const [first, second] = await Promise.all([readOrCreateSecret(file, make), readOrCreateSecret(file, make)]);
    expect(first).toBe(second);
    expect(await readOrCreateSecret(file, make)).toBe(first);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });

  it('leaves the folders above the secret enterable (the data directory is shared with PostgreSQL)', async () => {
    const dataDir = path.join(root, 'fresh', 'data');
    await readOrCreateSecret(path.join(dataDir, 'secrets', 'token'), () => 'x');
    expect(fs.statSync(dataDir).mode & 0o055).toBe(0o055 & ~process.umask());
  });
});
