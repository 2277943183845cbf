/**
 * storage/copy-out-rows.ts against the real Postgres: the rows' bytes come back exactly as COPY wrote them, across
 * many socket reads; a COPY that fails midway errors the stream; the client serves queries after both.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyOutRows } from '../../storage/copy-out-rows.js';
import { testEndpoints } from '../support/stack.js';

let client: pg.Client;

beforeAll(async () => {
  client = new pg.Client({ connectionString: testEndpoints().databaseUrl });
  await client.connect();
});

afterAll(async () => {
  await client.end();
});

async function collect(sql: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of client.query(new CopyOutRows(sql)) as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

describe('CopyOutRows', () => {
  it('gives the rows as COPY writes them, escapes and multi-byte text included', async () => {
    const text = await collect(
      `COPY (select i, repeat('é', i % 300), case when i % 7 = 0 then null else E'a\\tb\\\\c' end
        from generate_series(1, 50000) i) TO STDOUT`,
    );
    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(50_000);
    expect(lines[0]).toBe('1\té\ta\\tb\\\\c');
    expect(lines[6]).toBe(`7\t${'é'.repeat(7)}\t\\N`);
    expect(lines[49_999]).toBe(`50000\t${'é'.repeat(50_000 % 300)}\ta\\tb\\\\c`);
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('errors the stream when the COPY fails midway, and leaves the client usable', async () => {
    await expect(collect('COPY (select 1 / (100000 - i) from generate_series(1, 200000) i) TO STDOUT')).rejects.toThrow(
      /division by zero/,
    );
    await expect(collect('COPY (select * from no_such_table) TO STDOUT')).rejects.toThrow(/no_such_table/);
    expect((await client.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
  });

  it('gives nothing for no rows', async () => {
    expect(await collect('COPY (select 1 where false) TO STDOUT')).toBe('');
  });
});
