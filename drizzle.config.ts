import { defineConfig } from 'drizzle-kit';

// Only `generate` uses this file: migrations are applied by the application (storage/database.ts), so no credentials.
export default defineConfig({
  dialect: 'postgresql',
  schema: './schema/index.ts',
  out: './schema/migrations',
  strict: true,
  verbose: true,
});
