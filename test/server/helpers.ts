import { pino } from 'pino';
import type { ApiDeps } from '../../server/app.js';
import type { Logger } from '../../core/logger.js';

/** A logger whose JSON lines are kept in memory, so tests can assert what the server logged. */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, lines };
}

/** ApiDeps with harmless defaults; new required deps get a default here rather than in every test. */
export function testDeps(overrides: Partial<ApiDeps> = {}): ApiDeps {
  return {
    logger: pino({ level: 'silent' }),
    readiness: [],
    version: '1.2.3-test',
    bodyLimitBytes: 1024,
    auth: { kind: 'open' },
    ...overrides,
  };
}
