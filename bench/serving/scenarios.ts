/** The scenarios of the serving benchmark: which server, which model, which requests; `--scenarios` picks by key. */

/** The servers a scenario can run against (see bench/serving.ts). */
export type ServerName = 'bare' | 'api' | 'api-nolog' | 'api-quiet' | 'peer';

export interface Scenario {
  readonly key: string;
  readonly label: string;
  readonly server: ServerName;
  readonly model?: 'lr' | 'gbt';
  readonly batch?: boolean;
  readonly swap?: boolean;
  /** The bare route's POST variant: the single-instance bodies, parsed, then the constant answer. */
  readonly post?: boolean;
}

/** Every scenario, in the order each round runs them. */
export const SCENARIOS: readonly Scenario[] = [
  { key: 'ceiling', label: 'bare Hono, GET constant JSON (ceiling)', server: 'bare' },
  { key: 'ceiling-post', label: 'bare Hono, POST body parsed, constant JSON', server: 'bare', post: true },
  { key: 'lr', label: 'predict LR, 1 instance, logs on', server: 'api', model: 'lr' },
  { key: 'gbt', label: 'predict GBT, 1 instance, logs on', server: 'api', model: 'gbt' },
  { key: 'swap', label: 'predict GBT, 1 instance, logs on, hot swaps', server: 'api', model: 'gbt', swap: true },
  { key: 'lr-nolog', label: 'predict LR, 1 instance, prediction log off', server: 'api-nolog', model: 'lr' },
  { key: 'gbt-nolog', label: 'predict GBT, 1 instance, prediction log off', server: 'api-nolog', model: 'gbt' },
  { key: 'lr-quiet', label: 'predict LR, 1 instance, prediction + request log off', server: 'api-quiet', model: 'lr' },
  { key: 'lr-batch', label: 'predict LR, 1,000 instances, logs on', server: 'api', model: 'lr', batch: true },
  { key: 'gbt-batch', label: 'predict GBT, 1,000 instances, logs on', server: 'api', model: 'gbt', batch: true },
  {
    key: 'lr-batch-nolog',
    label: 'predict LR, 1,000 instances, prediction log off',
    server: 'api-nolog',
    model: 'lr',
    batch: true,
  },
  {
    key: 'gbt-batch-nolog',
    label: 'predict GBT, 1,000 instances, prediction log off',
    server: 'api-nolog',
    model: 'gbt',
    batch: true,
  },
  { key: 'peer-lr', label: 'FastAPI + sklearn LR, 1 instance', server: 'peer', model: 'lr' },
  { key: 'peer-gbt', label: 'FastAPI + sklearn GBT, 1 instance', server: 'peer', model: 'gbt' },
];
