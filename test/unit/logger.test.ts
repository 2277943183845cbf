/** The process logger censors secrets wherever the config and endpoints put them. */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { lines, logger: createLogger({ level: 'info', name: 'test', destination }) };
}

describe('createLogger', () => {
  it('censors the secrets of the config and the endpoints, and nothing else', () => {
    const { lines, logger } = capture();
    const s3 = { endpoint: 'http://127.0.0.1:9000', accessKey: 'minio', secretKey: 's3-secret' };
    const databaseUrl = 'postgresql://u:db-secret@127.0.0.1:5432/mlops';
    logger.info({ s3, databaseUrl, password: 'pw' }, 'parts');
    logger.info({ config: { s3, database: { url: databaseUrl, port: 5432 } } }, 'config');
    logger.info({ endpoints: { databaseUrl, s3 } }, 'endpoints');
    logger.child({ requestId: 'r1' }).info({ secretKey: 'x', status: 200 }, 'child');
    const text = JSON.stringify(lines);
    for (const secret of ['s3-secret', 'db-secret', '"pw"', '"x"']) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({ s3: { accessKey: 'minio', secretKey: '[redacted]' }, password: '[redacted]' });
    expect(lines[1]).toMatchObject({ config: { database: { url: '[redacted]', port: 5432 } } });
    expect(lines[3]).toMatchObject({ requestId: 'r1', status: 200, secretKey: '[redacted]', service: 'test' });
  });

  it('censors API keys, Authorization headers, pg options and connection passwords', () => {
    const { lines, logger } = capture();
    const token = 'mlk_AbCdEfGh_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG';
    logger.info({ token, name: 'admin' }, 'key');
    logger.info({ authorization: `Bearer ${token}` }, 'header');
    logger.info({ headers: { authorization: `Bearer ${token}`, host: 'api' } }, 'headers');
    logger.info({ req: { method: 'GET', headers: { authorization: `Bearer ${token}` } } }, 'request');
    logger.info({ connectionString: 'postgres://u:pg-secret@db/x', max: 2 }, 'pool');
    logger.info({ secret: { source: 'encrypted', value: 'conn-secret' } }, 'connection');
    logger.info({ connectionsKey: 'sealing-key', config: { dataAccess: { connectionsKey: 'sealing-key' } } }, 'keys');
    const text = JSON.stringify(lines);
    for (const secret of [token, 'pg-secret', 'conn-secret', 'sealing-key']) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({ token: '[redacted]', name: 'admin' });
    expect(lines[2]).toMatchObject({ headers: { authorization: '[redacted]', host: 'api' } });
    expect(lines[3]).toMatchObject({ req: { method: 'GET', headers: { authorization: '[redacted]' } } });
    expect(lines[4]).toMatchObject({ connectionString: '[redacted]', max: 2 });
    expect(lines[5]).toMatchObject({ secret: { source: 'encrypted', value: '[redacted]' } });
  });
});
