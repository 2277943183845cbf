/**
 * The rules of monitoring actions, without services: the alert webhook's signature and refused targets (checked on
 * the addresses the delivery connects to), when a window acts and rolls back, which earlier champion a rollback
 * serves again, the retrain cooldown's bounds, and monitoring gauges that answer a scrape while their read hangs.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { rollbackTarget } from '../../../activities/monitoring-actions.js';
import {
  isMonitoringRollback,
  rollbackCause,
  rollbackReasonPrefix,
  windowActs,
  windowSecondsOf,
  type MonitoringPolicy,
} from '../../../monitoring/action-policy.js';
import {
  alertBodyOf,
  AlertTargetRefusedError,
  alertTargetRefusal,
  postAlert,
  refusedAddress,
  signAlertBody,
  verifyAlertSignature,
  type HostLookup,
} from '../../../monitoring/alert-webhook.js';
import { registerMonitoringGauges, type LatestWindow } from '../../../monitoring/gauges.js';
import type { WindowSummary } from '../../../monitoring/types.js';
import { DEFAULT_RETRAIN_COOLDOWN_SECONDS, pipelineDefinitionSchema } from '../../../pipelines/definition.js';
import type { HistoryRevision } from '../../../storage/deployment-store.js';

function summary(overrides: Partial<WindowSummary> = {}): WindowSummary {
  return {
    windowId: '0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c',
    deployment: 'delays',
    model: 'delays',
    version: 2,
    versionId: 'v2',
    windowStart: '2026-01-01T00:00:00.000Z',
    windowEnd: '2026-01-01T01:00:00.000Z',
    rows: 500,
    labelledRows: 400,
    features: [],
    evaluation: { auc: 0.8 },
    breaches: [],
    breached: false,
    belowMinRows: false,
    ...overrides,
  };
}

const policy = (overrides: Partial<MonitoringPolicy> = {}): MonitoringPolicy => ({
  everySeconds: 3600,
  minRows: 100,
  thresholds: { skew: 0.1, drift: 0.1, features: {} },
  ...overrides,
});

describe('alert signature', () => {
  it('is the hex HMAC-SHA256 of the raw body under the secret, prefixed sha256=', () => {
    // RFC 4231 test case 2.
    expect(signAlertBody('what do ya want for nothing?', 'Jefe')).toBe(
      'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    const body = JSON.stringify(alertBodyOf(summary({ breached: true })));
    expect(signAlertBody(body, 's3cret')).toBe(`sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`);
  });

  it('verifies the body as sent and nothing else', () => {
    const body = '{"a":1}';
    const signature = signAlertBody(body, 'k');
    expect(verifyAlertSignature(body, 'k', signature)).toBe(true);
    expect(verifyAlertSignature('{"a": 1}', 'k', signature)).toBe(false);
    expect(verifyAlertSignature(body, 'other', signature)).toBe(false);
    expect(verifyAlertSignature(body, 'k', 'sha256=00')).toBe(false);
  });

  it('says which deployment and window breached what, and where the report is', () => {
    const body = alertBodyOf(
      summary({ breached: true, breaches: [{ kind: 'drift', subject: 'x', value: 0.3, threshold: 0.1 }] }),
    );
    expect(body).toMatchObject({
      kind: 'monitoring_breach',
      deployment: 'delays',
      version: 2,
      window: { id: '0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c', end: '2026-01-01T01:00:00.000Z' },
      breaches: [{ kind: 'drift', subject: 'x' }],
      summaryPath: '/v1/deployments/delays/monitoring/0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c',
    });
  });
});

describe('alert targets', () => {
  it('refuses link-local and metadata addresses, however they are written', () => {
    for (const address of [
      '169.254.169.254',
      '169.254.0.1',
      '[fd00:ec2::254]',
      'fd00:ec2:0:0:0:0:0:254',
      'fe80::1',
      '::ffff:169.254.169.254',
      '::ffff:a9fe:a9fe',
    ]) {
      expect(refusedAddress(address), address).toBeDefined();
    }
    for (const address of ['127.0.0.1', '10.0.0.1', '8.8.8.8', '::1', 'fd00::1', '169.253.1.1', 'example.com']) {
      expect(refusedAddress(address), address).toBeUndefined();
    }
  });

  it('refuses URLs whose host is or resolves to a refused address, and anything not http(s)', async () => {
    const lookup: HostLookup = async (host) =>
      host === 'metadata.internal'
        ? [{ address: '10.0.0.5' }, { address: '169.254.169.254' }]
        : [{ address: '127.0.0.1' }];
    expect(await alertTargetRefusal('http://169.254.169.254/latest/meta-data', lookup)).toMatch(/metadata/);
    // WHATWG URLs normalise other spellings of the address to the dotted quad.
    expect(await alertTargetRefusal('http://2852039166/', lookup)).toMatch(/metadata/);
    expect(await alertTargetRefusal('http://[fd00:ec2::254]/', lookup)).toMatch(/metadata/);
    expect(await alertTargetRefusal('http://[::ffff:169.254.169.254]/', lookup)).toMatch(/metadata/);
    expect(await alertTargetRefusal('http://metadata.internal/hook', lookup)).toMatch(/resolves to/);
    expect(await alertTargetRefusal('file:///etc/passwd', lookup)).toMatch(/not an http/);
    expect(await alertTargetRefusal('http://127.0.0.1:9000/hook', lookup)).toBeUndefined();
    expect(await alertTargetRefusal('https://hooks.example.com/x', lookup)).toBeUndefined();
    const failing: HostLookup = async () => {
      throw new Error('ENOTFOUND');
    };
    expect(await alertTargetRefusal('https://nowhere.invalid/x', failing)).toBeUndefined();
  });
});

describe('alert delivery', () => {
  /** A receiver on 127.0.0.1 counting the requests it gets. */
  async function receiver(): Promise<{ port: number; hits: () => number; close: () => Promise<void> }> {
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      port: (server.address() as AddressInfo).port,
      hits: () => hits,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }
  const send = (url: string, lookup: HostLookup) =>
    postAlert(url, { headers: { 'content-type': 'application/json' }, body: '{}', timeoutMs: 5000, lookup });

  it('connects to the address its checked lookup answered', async () => {
    const hook = await receiver();
    try {
      const lookup: HostLookup = async (host) => (host === 'hooks.test' ? [{ address: '127.0.0.1' }] : []);
      expect(await send(`http://hooks.test:${hook.port}/hook`, lookup)).toEqual({ status: 204 });
      expect(hook.hits()).toBe(1);
    } finally {
      await hook.close();
    }
  });

  it('refuses a host that resolves to a refused address when connecting (DNS rebinding), sending nothing', async () => {
    const hook = await receiver();
    try {
      // The check before delivery saw a harmless address; the resolution when connecting answers the metadata
      // service: the connection is refused, whatever the earlier check said.
      let lookups = 0;
      const rebinding: HostLookup = async () =>
        lookups++ === 0 ? [{ address: '127.0.0.1' }] : [{ address: '169.254.169.254' }];
      const url = `http://rebind.test:${hook.port}/hook`;
      expect(await alertTargetRefusal(url, rebinding)).toBeUndefined();
      const refused = await send(url, rebinding).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(AlertTargetRefusedError);
      expect((refused as Error).message).toMatch(/rebind\.test resolves to 169\.254\.169\.254 is the cloud instance/);
      // Any refused address among several refuses the host.
      const mixed: HostLookup = async () => [{ address: '127.0.0.1' }, { address: 'fe80::1' }];
      await expect(send(url, mixed)).rejects.toBeInstanceOf(AlertTargetRefusedError);
      expect(hook.hits()).toBe(0);
    } finally {
      await hook.close();
    }
  });

  it('answers a redirect as it is, without following it', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      expect(await send(`http://127.0.0.1:${port}/`, async () => [])).toEqual({ status: 302 });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('the retrain cooldown', () => {
  const definition = (monitoring: Record<string, unknown>) => ({
    name: 'delays',
    source: { uri: '/tmp/delays.csv' },
    label: { name: 'delayed', expression: 'delayed', task: 'binary' },
    features: [{ name: 'distance', expression: 'distance', kind: 'numeric' }],
    split: { kind: 'hash', key: 'distance', evalFraction: 0.3 },
    trainer: { kind: 'logistic_regression', params: {} },
    monitoring,
  });

  it('defaults to 6 hours, longer than the default interval', () => {
    const parsed = pipelineDefinitionSchema.parse(definition({ retrain: {} }));
    expect(parsed.monitoring?.retrain?.cooldownSeconds).toBe(DEFAULT_RETRAIN_COOLDOWN_SECONDS);
    expect(DEFAULT_RETRAIN_COOLDOWN_SECONDS).toBe(21_600);
    expect(DEFAULT_RETRAIN_COOLDOWN_SECONDS).toBeGreaterThan(parsed.monitoring!.everySeconds);
  });

  it('is refused shorter than the interval, naming monitoring.retrain.cooldownSeconds', () => {
    const result = pipelineDefinitionSchema.safeParse(
      definition({ everySeconds: 7200, retrain: { cooldownSeconds: 3600 } }),
    );
    expect(result.success).toBe(false);
    expect(result.error?.issues).toContainEqual(
      expect.objectContaining({
        path: ['monitoring', 'retrain', 'cooldownSeconds'],
        message: expect.stringMatching(/shorter than monitoring\.everySeconds/),
      }),
    );
    // Exactly the interval is allowed (the next window, one interval later, is within it).
    expect(
      pipelineDefinitionSchema.safeParse(definition({ everySeconds: 3600, retrain: { cooldownSeconds: 3600 } }))
        .success,
    ).toBe(true);
    // A short interval leaves the default cooldown alone.
    expect(pipelineDefinitionSchema.safeParse(definition({ everySeconds: 60, retrain: {} })).success).toBe(true);
  });
});

describe('monitoring gauges', () => {
  const window: LatestWindow = {
    deployment: 'delays',
    windowEnd: new Date('2026-01-01T01:00:00Z'),
    summary: { rows: 500, breached: true },
  };

  it('answer a scrape within the read timeout with the last windows read while a read hangs', async () => {
    let hang = false;
    let reads = 0;
    const registry = new Registry();
    registerMonitoringGauges(registry, {
      cacheMs: 0,
      readTimeoutMs: 100,
      read: () => {
        reads++;
        return hang ? new Promise<never>(() => {}) : Promise.resolve([window]);
      },
    });
    expect(await registry.metrics()).toContain('mlops_monitoring_window_rows{deployment="delays"} 500');
    await new Promise((resolve) => setTimeout(resolve, 5));
    hang = true;
    const started = performance.now();
    const text = await registry.metrics();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(text).toContain('mlops_monitoring_window_breached{deployment="delays"} 1');
    // The hung read is still the one in flight: a later scrape waits on it rather than start another.
    expect(await registry.metrics()).toContain('mlops_monitoring_window_rows{deployment="delays"} 500');
    expect(reads).toBe(2);
  });
});

describe('when a window acts', () => {
  const rollback = { metric: 'auc' as const, min: 0.7, minLabelledRows: 100 };

  it('acts on a breach with enough rows, never below minRows or without a policy', () => {
    expect(windowActs(summary({ breached: true }), policy())).toBe(true);
    expect(windowActs(summary(), policy())).toBe(false);
    expect(windowActs(summary({ breached: true, belowMinRows: true }), policy())).toBe(false);
    expect(windowActs(summary({ breached: true }), undefined)).toBe(false);
  });

  it('rolls back when the live metric crosses its floor on enough labelled rows', () => {
    expect(rollbackCause(summary({ live: { auc: 0.61 } }), rollback)).toBe('auc 0.61 < 0.7 on 400 labelled rows');
    expect(rollbackCause(summary({ live: { auc: 0.75 } }), rollback)).toBeUndefined();
    expect(rollbackCause(summary({ live: { auc: 0.61 }, labelledRows: 99 }), rollback)).toBeUndefined();
    expect(rollbackCause(summary(), rollback)).toBeUndefined();
    expect(
      rollbackCause(summary({ live: { log_loss: 0.9 } }), { metric: 'log_loss', max: 0.6, minLabelledRows: 1 }),
    ).toBe('log_loss 0.9 > 0.6 on 400 labelled rows');
    // A floor crossed is reason enough to act, even with no distance breached.
    expect(windowActs(summary({ live: { auc: 0.5 } }), policy({ rollback }))).toBe(true);
  });

  it('covers the asked span, else the definition’s window, else its interval', () => {
    expect(windowSecondsOf(policy({ windowSeconds: 600 }), 60)).toBe(60);
    expect(windowSecondsOf(policy({ windowSeconds: 600 }))).toBe(600);
    expect(windowSecondsOf(policy({ everySeconds: 120 }))).toBe(120);
    expect(windowSecondsOf(undefined)).toBe(3600);
  });
});

describe('rollbackTarget', () => {
  let at = 0;
  const rev = (versionId: string, reason = 'deployed', role = 'champion', versionStatus = 'blessed'): HistoryRevision =>
    ({
      id: `r${at}`,
      versionId,
      version: Number(versionId.slice(1)),
      versionStatus,
      role,
      reason,
      startedAt: new Date(at++),
    }) as never;

  it('is the newest earlier champion of another version', () => {
    const history = [rev('v3'), rev('v3', 'canary share'), rev('v2', 'x', 'shadow'), rev('v2'), rev('v1')];
    expect(rollbackTarget(history, 'v3')?.versionId).toBe('v2');
    expect(rollbackTarget([rev('v1')], 'v1')).toBeUndefined();
  });

  it('skips a version a monitoring rollback already moved away from', () => {
    // v2 was rolled back to v1; v1 is now bad too: going back to v2 would undo the first rollback.
    const reason = `${rollbackReasonPrefix('w1')}: auc 0.6 < 0.7`;
    expect(isMonitoringRollback(reason)).toBe(true);
    const history = [rev('v1', reason), rev('v2'), rev('v1'), rev('v0')];
    expect(rollbackTarget(history, 'v1')?.versionId).toBe('v0');
  });

  it('passes over an earlier champion that may not serve now for an older one', () => {
    const archived = [rev('v3'), rev('v2', 'deployed', 'champion', 'archived'), rev('v1')];
    expect(rollbackTarget(archived, 'v3')?.versionId).toBe('v1');
    expect(rollbackTarget(archived, 'v3', { allowUnblessed: true })?.versionId).toBe('v1');
    const unblessed = [
      rev('v3'),
      rev('v2', 'deployed', 'champion', 'registered'),
      rev('v1', 'deployed', 'champion', 'archived'),
    ];
    expect(rollbackTarget(unblessed, 'v3')).toBeUndefined();
    expect(rollbackTarget(unblessed, 'v3', { allowUnblessed: true })?.versionId).toBe('v2');
  });

  it('tells which champion each rollback replaced across repeated revisions of one version', () => {
    // v1, v2 (its revision started again by a canary), then a rollback to v1: v2 is the one rolled back from.
    const history = [
      rev('v1', `${rollbackReasonPrefix('w2')}: auc`),
      rev('v2', 'canary over'),
      rev('v2'),
      rev('v1'),
      rev('v0'),
    ];
    expect(rollbackTarget(history, 'v1')?.versionId).toBe('v0');
  });
});
