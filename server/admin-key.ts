import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isErrnoException } from '../core/errors.js';
import type { ApiKeyStore } from '../storage/api-key-store.js';

/** Where `npm start` keeps the admin key it made, readable by its owner only. */
export function adminKeyFile(dataDir: string): string {
  return path.join(dataDir, 'secrets', 'admin-api-key');
}

export interface AdminKey {
  /** The token, when this data directory holds a live admin key's token. */
  readonly token: string | undefined;
  readonly file: string;
  /** True when this call created it (the first start). */
  readonly created: boolean;
}

async function readToken(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * The first start's admin key: when no live key holds `admin`, creates one named `admin` and writes its token to
 * {@link adminKeyFile} (mode 0600), so the operator can create the keys people and services use. A later start
 * finds the file and the key; when an operator revoked it and made another admin key, nothing is created.
 */
export async function ensureAdminKey(keys: ApiKeyStore, dataDir: string): Promise<AdminKey> {
  const file = adminKeyFile(dataDir);
  const stored = await readToken(file);
  if (stored) {
    const key = await keys.authenticate(stored);
    if (key?.scopes.includes('admin')) return { token: stored, file, created: false };
  }
  if (await keys.hasLiveAdmin()) return { token: undefined, file, created: false };
  const name = (await keys.list()).some((k) => k.name === 'admin') ? `admin-${Date.now()}` : 'admin';
  const { token } = await keys.create({ name, scopes: ['admin'], createdBy: 'npm start' });
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  // Written whole, then renamed: a crash leaves the old file or the new one, never half a token.
  const partial = `${file}.partial`;
  await writeFile(partial, `${token}\n`, { mode: 0o600 });
  await chmod(partial, 0o600);
  await rename(partial, file);
  return { token, file, created: true };
}
