import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyFromBase64, keyFromFile, SecretBox, SecretIntegrityError } from '../../../storage/secret-box.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'secret-box-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const key = randomBytes(32);
const box = new SecretBox(async () => key);

describe('SecretBox', () => {
  it('round-trips a secret, with a fresh IV each time and no plaintext in the sealed form', async () => {
    const sealed = await box.seal('s3cr3t-pässword', 'connection:warehouse');
    expect(sealed).not.toContain('s3cr3t');
    expect(sealed.split('.')).toHaveLength(3);
    expect(await box.seal('s3cr3t-pässword', 'connection:warehouse')).not.toBe(sealed);
    await expect(box.open(sealed, 'connection:warehouse')).resolves.toBe('s3cr3t-pässword');
  });

  it('detects tampering, another context and another key', async () => {
    const sealed = await box.seal('secret', 'connection:a');
    const [iv, tag, ciphertext] = sealed.split('.') as [string, string, string];
    const flipped = Buffer.from(ciphertext, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    await expect(box.open(`${iv}.${tag}.${flipped.toString('base64url')}`, 'connection:a')).rejects.toBeInstanceOf(
      SecretIntegrityError,
    );
    await expect(box.open(sealed, 'connection:b')).rejects.toBeInstanceOf(SecretIntegrityError);
    await expect(new SecretBox(async () => randomBytes(32)).open(sealed, 'connection:a')).rejects.toBeInstanceOf(
      SecretIntegrityError,
    );
    await expect(box.open('not-sealed', 'connection:a')).rejects.toBeInstanceOf(SecretIntegrityError);
  });

  it('generates a key file once, private to its owner', async () => {
    const file = path.join(dir, 'secrets', 'connections.key');
    const first = await keyFromFile(file);
    expect(first).toHaveLength(32);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await keyFromFile(file)).toEqual(first);
    expect(keyFromBase64(await readFile(file, 'utf8'))).toEqual(first);
    expect(() => keyFromBase64('c2hvcnQ=')).toThrow(/32 bytes/);
  });
});
