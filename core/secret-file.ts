import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isErrnoException } from './errors.js';

/**
 * The secret kept in `file` (trimmed), writing `make()` there first when the file does not exist: mode 0600, its
 * own folder 0700 (the folders above it keep the default mode). Created with O_EXCL, so two processes racing both
 * end with the secret written first.
 */
export async function readOrCreateSecret(file: string, make: () => string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if (!isErrnoException(error) || error.code !== 'ENOENT') throw error;
  }
  // Only the secret's own folder is private: a recursive mkdir would give every folder it creates mode 0700, the
  // data directory included, which the embedded PostgreSQL (another user) must be able to enter.
  const folder = path.dirname(file);
  await mkdir(path.dirname(folder), { recursive: true });
  await mkdir(folder, { recursive: true, mode: 0o700 });
  try {
    await writeFile(file, `${make()}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if (!isErrnoException(error) || error.code !== 'EEXIST') throw error;
  }
  return (await readFile(file, 'utf8')).trim();
}
