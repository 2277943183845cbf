/**
 * A deployment's monitoring, mounted by deployments.ts under `/v1/deployments`:
 *
 * - `GET /v1/deployments/{name}/monitoring`: the time series of window summaries (by time, one feature, paged)
 * - `GET .../monitoring/{windowId}`: one window with its report, actions and alert deliveries
 * - `GET|PUT|DELETE .../monitoring/schedule`: the deployment's monitoring schedule on Temporal
 * - `POST .../monitoring/windows`: compute a window now (the monitor workflow, actions included) and answer it
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { FailureType } from '../../core/constants.js';
import { failureOf } from '../../core/failure.js';
import type { WindowSummary } from '../../monitoring/types.js';
import {
  computeMonitoringWindowNow,
  deleteMonitorSchedule,
  describeMonitorSchedule,
  ensureMonitorSchedule,
  type MonitorScheduleView,
} from '../../pipelines/monitoring-schedule.js';
import type { AlertDelivery, MonitoringAction, MonitoringWindow } from '../../schema/index.js';
import type { ArtifactStore } from '../../storage/artifact-store.js';
import type { DeploymentStore } from '../../storage/deployment-store.js';
import type { MonitoringActionStore } from '../../storage/monitoring-action-store.js';
import type { MonitoringStore } from '../../storage/monitoring-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError, ServiceUnavailableError, ValidationError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, iso, jsonResponse, nameParamSchema, pageQuerySchema, UUID_PATTERN } from './common.js';

export interface MonitoringRouteDeps {
  readonly deployments: Pick<DeploymentStore, 'getDeployment'>;
  readonly windows: Pick<MonitoringStore, 'listWindows' | 'getWindow'>;
  readonly actions: Pick<MonitoringActionStore, 'ofWindow'>;
  /** Reads a window's report artifact. */
  readonly artifacts: Pick<ArtifactStore, 'get'>;
  /** Manages schedules and runs the monitor workflow; without it, those routes answer 503. */
  readonly temporal?: { readonly client: Client; readonly taskQueue: string } | undefined;
}

/** How far ahead of the server's clock a window asked for may end (clock skew between caller and server). */
const MAX_FUTURE_END_MS = 60_000;

const intervalSeconds = z
  .number()
  .int()
  .min(10)
  .max(7 * 86_400);
const windowSecondsSchema = z
  .number()
  .int()
  .min(10)
  .max(30 * 86_400);

const windowSchema = z
  .object({
    windowId: z.string(),
    deployment: z.string(),
    model: z.string(),
    version: z.number().int(),
    versionId: z.string(),
    windowStart: z.string().openapi({ format: 'date-time' }),
    windowEnd: z.string().openapi({ format: 'date-time' }),
    rows: z.number().int(),
    labelledRows: z.number().int(),
    breached: z.boolean(),
    belowMinRows: z.boolean().optional(),
    breaches: z.array(z.record(z.string(), z.unknown())),
    features: z
      .array(z.record(z.string(), z.unknown()))
      .openapi({ description: 'Per feature: skew and drift distances with thresholds, PSI, missing rates.' }),
    prediction: z.record(z.string(), z.unknown()).optional(),
    live: z.record(z.string(), z.number()).optional(),
    estimated: z.record(z.string(), z.number()).optional(),
    evaluation: z.record(z.string(), z.number()).optional(),
    reportUri: z.string().optional(),
    createdAt: z.string().optional().openapi({ format: 'date-time' }),
  })
  .openapi('MonitoringWindow');

const actionSchema = z
  .object({
    id: z.string(),
    kind: z.string().openapi({ description: 'alert, retrain or rollback.' }),
    status: z.string().openapi({ description: 'pending (an alert still being delivered), done, skipped or failed.' }),
    reason: z.string(),
    details: z.record(z.string(), z.unknown()).nullable(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('MonitoringAction');

const deliverySchema = z
  .object({
    actionId: z.string(),
    url: z.string(),
    attempt: z.number().int(),
    status: z.number().int().nullable().openapi({ description: 'The HTTP status answered; null without an answer.' }),
    error: z.string().nullable(),
    durationMs: z.number().int(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('AlertDelivery');

const scheduleSchema = z
  .object({
    scheduleId: z.string(),
    deployment: z.string(),
    everySeconds: z.number().int().optional(),
    windowSeconds: z.number().int().optional(),
    paused: z.boolean(),
    nextActionTimes: z.array(z.string()),
    recentActions: z.array(z.object({ scheduledAt: z.string(), takenAt: z.string(), workflowId: z.string() })),
  })
  .openapi('MonitoringSchedule');

const windowIdSchema = z
  .string()
  .regex(UUID_PATTERN, 'a window id (UUID)')
  .openapi({ param: { name: 'windowId', in: 'path' } });

const params = z.object({ name: nameParamSchema });
const unavailable = errorResponse('This API is not connected to the workflow service.');

const listRoute = createRoute({
  method: 'get',
  path: '/{name}/monitoring',
  ...scoped('read'),
  tags: ['monitoring'],
  summary: 'A deployment’s monitoring windows, newest first: distances, live and estimated metrics, breaches',
  request: {
    params,
    query: pageQuerySchema.extend({
      from: z.iso
        .datetime({ offset: true })
        .optional()
        .openapi({ param: { name: 'from', in: 'query' }, description: 'Windows ending after this time.' }),
      to: z.iso
        .datetime({ offset: true })
        .optional()
        .openapi({ param: { name: 'to', in: 'query' }, description: 'Windows starting before this time.' }),
      feature: z
        .string()
        .min(1)
        .max(256)
        .optional()
        .openapi({
          param: { name: 'feature', in: 'query' },
          description: 'Only this feature’s distances in each window (`prediction`: the predictions’).',
        }),
    }),
  },
  responses: {
    200: jsonResponse(
      'The windows.',
      z.object({ deployment: z.string(), windows: z.array(windowSchema) }).openapi('MonitoringWindows'),
    ),
    400: errorResponse('Invalid name or query.'),
    404: errorResponse('No such deployment.'),
  },
});

const getScheduleRoute = createRoute({
  method: 'get',
  path: '/{name}/monitoring/schedule',
  ...scoped('read'),
  tags: ['monitoring'],
  summary: 'The deployment’s monitoring schedule: interval, window, next and recent actions',
  request: { params },
  responses: {
    200: jsonResponse('The schedule.', scheduleSchema),
    404: errorResponse('No such deployment, or it has no monitoring schedule.'),
    503: unavailable,
  },
});

const putScheduleRoute = createRoute({
  method: 'put',
  path: '/{name}/monitoring/schedule',
  ...scoped('deploy'),
  tags: ['monitoring'],
  summary: 'Create or update the deployment’s monitoring schedule',
  description:
    'A Temporal Schedule `monitor:<deployment>` computes a window every `everySeconds` (overlaps skipped). A ' +
    'pipeline whose definition has a `monitoring` section creates it when it deploys; this sets it by hand, and ' +
    'later deploys keep a schedule set by hand as it is (delete it to hand it back to the definition).',
  request: {
    params,
    body: {
      content: {
        'application/json': {
          schema: z
            .strictObject({
              everySeconds: intervalSeconds.openapi({
                description: 'How often a window is computed (10 s to 7 days).',
              }),
              windowSeconds: windowSecondsSchema
                .optional()
                .openapi({ description: 'The span of each window. Default: the definition’s, else the interval.' }),
            })
            .openapi('MonitoringScheduleRequest'),
        },
      },
      required: true,
    },
  },
  responses: {
    200: jsonResponse('The schedule was updated.', scheduleSchema),
    201: jsonResponse('The schedule was created.', scheduleSchema),
    400: errorResponse('Invalid interval or window.'),
    404: errorResponse('No such deployment.'),
    503: unavailable,
  },
});

const deleteScheduleRoute = createRoute({
  method: 'delete',
  path: '/{name}/monitoring/schedule',
  ...scoped('deploy'),
  tags: ['monitoring'],
  summary: 'Delete the deployment’s monitoring schedule (its windows stay)',
  request: { params },
  responses: {
    200: jsonResponse('The schedule was deleted.', z.object({ scheduleId: z.string(), deleted: z.literal(true) })),
    404: errorResponse('No such deployment, or it has no monitoring schedule.'),
    503: unavailable,
  },
});

const computeRoute = createRoute({
  method: 'post',
  path: '/{name}/monitoring/windows',
  ...scoped('trigger'),
  tags: ['monitoring'],
  summary: 'Compute a monitoring window now, run its actions, and answer its summary',
  description:
    'Runs the `monitorDeployment` workflow for the window ending at `windowEnd` (default: now) and waits for it: ' +
    'the window is stored (computing the same span again updates it), and a breach alerts, retrains or rolls back ' +
    'as the definition says, once per window.',
  request: {
    params,
    body: {
      content: {
        'application/json': {
          schema: z
            .strictObject({
              windowEnd: z.iso
                .datetime({ offset: true })
                .optional()
                .openapi({ description: 'The window’s end (exclusive). Default: now.' }),
              windowSeconds: windowSecondsSchema
                .optional()
                .openapi({ description: 'The span. Default: the definition’s window, else its interval.' }),
            })
            .openapi('MonitoringWindowRequest'),
        },
      },
      required: false,
    },
  },
  responses: {
    200: jsonResponse(
      'The window, what its breach did, and the workflow that computed it.',
      windowSchema
        .extend({
          actions: z.array(
            z.object({ kind: z.string(), status: z.string(), reason: z.string(), details: z.unknown().optional() }),
          ),
          workflowId: z.string(),
        })
        .openapi('ComputedMonitoringWindow'),
    ),
    400: errorResponse('Invalid window.'),
    404: errorResponse('No such deployment, or it serves nothing.'),
    503: unavailable,
  },
});

const getWindowRoute = createRoute({
  method: 'get',
  path: '/{name}/monitoring/{windowId}',
  ...scoped('read'),
  tags: ['monitoring'],
  summary: 'One monitoring window: its summary, its report, and what its breach did',
  request: { params: z.object({ name: nameParamSchema, windowId: windowIdSchema }) },
  responses: {
    200: jsonResponse(
      'The window.',
      windowSchema
        .extend({
          report: z
            .unknown()
            .openapi({ description: 'The report artifact: bins, top shifted values, thresholds; null if unreadable.' }),
          actions: z.array(actionSchema),
          deliveries: z.array(deliverySchema).openapi({ description: 'Every attempt to deliver the alert.' }),
        })
        .openapi('MonitoringWindowDetails'),
    ),
    400: errorResponse('Invalid name or window id.'),
    404: errorResponse('No such deployment or window.'),
  },
});

type WindowJson = z.infer<typeof windowSchema>;

/** A window's summary as JSON (the schema's loose records for the nested parts). */
function summaryJson(summary: WindowSummary): WindowJson {
  const { prediction: _prediction, live: _live, estimated: _estimated, ...plain } = summary;
  return {
    ...plain,
    breaches: summary.breaches.map((b) => ({ ...b })),
    features: summary.features.map((f) => ({ ...f }) as unknown as Record<string, unknown>),
    ...(summary.prediction ? { prediction: { ...summary.prediction } as unknown as Record<string, unknown> } : {}),
    ...(summary.live ? { live: { ...summary.live } } : {}),
    ...(summary.estimated ? { estimated: { ...summary.estimated } } : {}),
    evaluation: { ...summary.evaluation },
  };
}

/**
 * A stored window as the API answers it: its summary with its id, report and when it was computed; with `feature`,
 * only that feature's distances (and breaches), or the predictions' for `prediction`.
 */
export function windowJson(row: MonitoringWindow, feature?: string): WindowJson {
  const stored = row.summary as unknown as Omit<WindowSummary, 'windowId' | 'reportUri'>;
  const full: WindowJson = {
    ...summaryJson({ ...stored, windowId: row.id, ...(row.reportUri ? { reportUri: row.reportUri } : {}) }),
    createdAt: iso(row.createdAt),
  };
  if (feature === undefined) return full;
  const { prediction, ...rest } = full;
  return {
    ...rest,
    features: full.features.filter((f) => f.feature === feature),
    breaches: full.breaches.filter((b) => b.kind === 'performance' || b.subject === feature),
    ...(feature === 'prediction' && prediction ? { prediction } : {}),
  };
}

function actionJson(a: MonitoringAction): z.infer<typeof actionSchema> {
  return {
    id: a.id,
    kind: a.kind,
    status: a.status,
    reason: a.reason,
    details: a.details,
    createdAt: iso(a.createdAt),
  };
}

function deliveryJson(d: AlertDelivery): z.infer<typeof deliverySchema> {
  return {
    actionId: d.actionId,
    url: d.url,
    attempt: d.attempt,
    status: d.status,
    error: d.error,
    durationMs: d.durationMs,
    createdAt: iso(d.createdAt),
  };
}

function scheduleJson(view: MonitorScheduleView): z.infer<typeof scheduleSchema> {
  return {
    scheduleId: view.scheduleId,
    deployment: view.deployment,
    ...(view.everySeconds !== undefined ? { everySeconds: view.everySeconds } : {}),
    ...(view.windowSeconds !== undefined ? { windowSeconds: view.windowSeconds } : {}),
    paused: view.paused,
    nextActionTimes: [...view.nextActionTimes],
    recentActions: [...view.recentActions],
  };
}

/** `/v1/deployments/{name}/monitoring...`: monitoring windows, their actions, and the monitoring schedule. */
export function deploymentMonitoring(deps: MonitoringRouteDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();

  const temporalOrThrow = () => {
    if (!deps.temporal) {
      throw new ServiceUnavailableError('monitoring schedules need the workflow service; this API is not connected');
    }
    return deps.temporal;
  };
  const deploymentOrThrow = async (name: string) => {
    const deployment = await deps.deployments.getDeployment(name);
    if (!deployment) throw new NotFoundError(`deployment ${name} does not exist`);
    return deployment;
  };

  router.openapi(listRoute, async (c) => {
    const { name } = c.req.valid('param');
    const { from, to, feature, limit, offset } = c.req.valid('query');
    await deploymentOrThrow(name);
    const rows = await deps.windows.listWindows(name, {
      from: from ? new Date(from) : undefined,
      to: to ? new Date(to) : undefined,
      limit,
      offset,
    });
    return c.json({ deployment: name, windows: rows.map((row) => windowJson(row, feature)) }, 200);
  });

  // Before `/{name}/monitoring/{windowId}`, which would otherwise see `schedule` as a (malformed) window id.
  router.openapi(getScheduleRoute, async (c) => {
    const { name } = c.req.valid('param');
    await deploymentOrThrow(name);
    const view = await describeMonitorSchedule(temporalOrThrow().client, name);
    if (!view) throw new NotFoundError(`deployment ${name} has no monitoring schedule`);
    return c.json(scheduleJson(view), 200);
  });

  router.openapi(putScheduleRoute, async (c) => {
    const { name } = c.req.valid('param');
    const body = c.req.valid('json');
    await deploymentOrThrow(name);
    const temporal = temporalOrThrow();
    const created = await ensureMonitorSchedule(temporal.client, {
      deployment: name,
      // Set by hand: later deploys keep it as set.
      setBy: 'api',
      everySeconds: body.everySeconds,
      windowSeconds: body.windowSeconds,
      taskQueue: temporal.taskQueue,
      logger: c.get('logger')(),
    });
    const view = await describeMonitorSchedule(temporal.client, name);
    if (!view) throw new ServiceUnavailableError(`the monitoring schedule of ${name} vanished right after it was set`);
    return created ? c.json(scheduleJson(view), 201) : c.json(scheduleJson(view), 200);
  });

  router.openapi(deleteScheduleRoute, async (c) => {
    const { name } = c.req.valid('param');
    await deploymentOrThrow(name);
    const deleted = await deleteMonitorSchedule(temporalOrThrow().client, name);
    if (!deleted) throw new NotFoundError(`deployment ${name} has no monitoring schedule`);
    return c.json({ scheduleId: `monitor:${name}`, deleted: true as const }, 200);
  });

  router.openapi(computeRoute, async (c) => {
    const { name } = c.req.valid('param');
    const body = c.req.valid('json') ?? {};
    await deploymentOrThrow(name);
    const windowEnd = body.windowEnd ? new Date(body.windowEnd) : undefined;
    if (windowEnd && windowEnd.getTime() > Date.now() + MAX_FUTURE_END_MS) {
      throw new ValidationError('windowEnd: a window cannot end in the future', {
        details: [{ path: 'windowEnd', message: 'in the future' }],
      });
    }
    let result;
    try {
      result = await computeMonitoringWindowNow(temporalOrThrow(), {
        deployment: name,
        windowEnd,
        windowSeconds: body.windowSeconds,
      });
    } catch (error) {
      if (!(error instanceof WorkflowFailedError)) throw error;
      const failure = failureOf(error.cause);
      if (failure.type === FailureType.NotFound) throw new NotFoundError(failure.message);
      if (failure.type === FailureType.InvalidInput) throw new ValidationError(failure.message);
      throw error;
    }
    const { summary, actions, workflowId } = result;
    return c.json({ ...summaryJson(summary), actions: actions.map((a) => ({ ...a })), workflowId }, 200);
  });

  router.openapi(getWindowRoute, async (c) => {
    const { name, windowId } = c.req.valid('param');
    await deploymentOrThrow(name);
    const row = await deps.windows.getWindow(name, windowId);
    if (!row) throw new NotFoundError(`deployment ${name} has no monitoring window ${windowId}`);
    const [{ actions, deliveries }, report] = await Promise.all([
      deps.actions.ofWindow(row.id),
      row.reportUri
        ? deps.artifacts
            .get(row.reportSha256 ? { uri: row.reportUri, sha256: row.reportSha256 } : row.reportUri)
            .then((bytes) => JSON.parse(bytes.toString('utf8')) as unknown)
            .catch((error: unknown) => {
              c.get('logger')().warn({ err: error, windowId }, 'could not read the monitoring report');
              return null;
            })
        : Promise.resolve(null),
    ]);
    return c.json(
      { ...windowJson(row), report, actions: actions.map(actionJson), deliveries: deliveries.map(deliveryJson) },
      200,
    );
  });

  return router;
}
