import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Temporal's native core has crashed inside worker threads: run test files in child processes.
    pool: 'forks',
    // Worker processes that tests start (and the processes they spawn) must not bind the fixed SDK metrics port.
    env: { WORKER_METRICS_PORT: '0' },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/server/**/*.test.ts'],
          testTimeout: 15_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // One isolated stack (real Temporal, Postgres, MinIO on random ports, fresh data directory) per test run.
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
