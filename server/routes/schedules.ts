/**
 * A pipeline's schedules and trigger events, mounted by pipelines.ts under `/v1/pipelines`:
 *
 * - `POST|GET /v1/pipelines/{name}/schedules`, `GET|PATCH|DELETE .../schedules/{schedule}`: cron or interval
 *   schedules on Temporal Schedules (pipelines/schedules.ts)
 * - `POST .../schedules/{schedule}/pause|unpause|trigger|backfill`
 * - `GET /v1/pipelines/{name}/triggers`: what each schedule action (and every other trigger) did
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CronSyntaxError, parseCron } from '../../pipelines/cron.js';
import { PIPELINE_NAME_PATTERN } from '../../pipelines/definition.js';
import type { PipelineRunnerDeps } from '../../pipelines/runs.js';
import {
  backfillPipelineSchedule,
  createPipelineSchedule,
  DEFAULT_SCHEDULE_NAME,
  deletePipelineSchedule,
  describePipelineSchedule,
  listPipelineSchedules,
  MAX_BACKFILL_ACTIONS,
  MAX_BACKFILL_DAYS,
  NEXT_ACTION_TIMES,
  pipelineScheduleId,
  SCHEDULE_OVERLAP_POLICIES,
  setPipelineSchedulePaused,
  timeZoneProblem,
  TRIGGER_SPACING_MS,
  triggerPipelineSchedule,
  updatePipelineSchedule,
  type PipelineSchedule,
  type PipelineSchedulesDeps,
} from '../../pipelines/schedules.js';
import { TRIGGER_KINDS, TRIGGER_STATUSES, type PipelineTrigger } from '../../schema/index.js';
import type { TriggerStore } from '../../storage/trigger-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import {
  errorResponse,
  iso,
  jsonResponse,
  pageQuerySchema,
  pipelineNameSchema,
  versionNumberSchema,
} from './common.js';

export interface SchedulesDeps {
  /** The Temporal client, the pipeline store and the main task queue the schedules' actions run on. */
  readonly runner: PipelineRunnerDeps;
  readonly triggers: TriggerStore;
  /** The Temporal UI's base URL, for links to a schedule's page; absent: no link. */
  readonly temporalUiUrl?: string | undefined;
}

const DAY_MS = 86_400_000;

const scheduleNameSchema = z
  .string()
  .regex(PIPELINE_NAME_PATTERN, 'lowercase letters, digits, - and _ only, at most 63')
  .openapi({ param: { name: 'schedule', in: 'path' }, example: 'nightly' });

const params = z.object({ name: pipelineNameSchema, schedule: scheduleNameSchema });

const overlapSchema = z.enum(SCHEDULE_OVERLAP_POLICIES);

const cronSchema = z
  .string()
  .max(200)
  .superRefine((value, ctx) => {
    try {
      parseCron(value);
    } catch (error) {
      if (!(error instanceof CronSyntaxError)) throw error;
      ctx.addIssue({ code: 'custom', message: error.message });
    }
  })
  .openapi({
    description:
      'Five fields (minute hour day-of-month month day-of-week) in `timezone`: numbers, `*`, ranges, steps, lists, ' +
      'month and weekday names, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. Day-of-month and ' +
      'day-of-week must both match (Temporal’s reading).',
    example: '0 2 * * *',
  });

const intervalSchema = z
  .strictObject({
    everySeconds: z
      .number()
      .int()
      .min(1)
      .max(366 * 86_400)
      .openapi({ example: 3600 }),
    offsetSeconds: z
      .number()
      .int()
      .min(0)
      .max(366 * 86_400)
      .default(0)
      .openapi({ description: 'Shift from the multiples of `everySeconds` since the Unix epoch. Default 0.' }),
  })
  .superRefine((interval, ctx) => {
    if (interval.offsetSeconds >= interval.everySeconds) {
      ctx.addIssue({ code: 'custom', path: ['offsetSeconds'], message: 'must be less than everySeconds' });
    }
  })
  .openapi('ScheduleInterval');

const timezoneSchema = z
  .string()
  .max(64)
  .superRefine((value, ctx) => {
    const problem = timeZoneProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .openapi({
    description:
      'IANA time zone the cron expression is read in, spelled as the time zone database spells it (names are ' +
      'case-sensitive: `Europe/Paris`, not `europe/paris`). Default UTC.',
    example: 'Europe/Paris',
  });

const jitterSchema = z
  .number()
  .int()
  .min(0)
  .max(86_400)
  .openapi({ description: 'Each action is delayed by a random 0 to this many seconds. Default 0.' });

const catchupSchema = z
  .number()
  .int()
  .min(10)
  .max(366 * 86_400)
  .openapi({
    description:
      'After an outage of Temporal, actions missed by at most this many seconds are still taken. Default 300.',
  });

const noteSchema = z.string().trim().min(1).max(1000);

/** One issue at `cron` unless exactly one of cron and interval is given (or, for a change, at most one). */
const oneTiming =
  (required: boolean) =>
  (body: { cron?: string | undefined; interval?: unknown }, ctx: z.RefinementCtx): void => {
    const given = Number(body.cron !== undefined) + Number(body.interval !== undefined);
    if (given > 1 || (required && given === 0)) {
      ctx.addIssue({ code: 'custom', path: ['cron'], message: 'give exactly one of cron and interval' });
    }
  };

const createBodySchema = z
  .strictObject({
    name: scheduleNameSchema.default(DEFAULT_SCHEDULE_NAME).openapi({
      description: `The schedule's name within its pipeline. Default \`${DEFAULT_SCHEDULE_NAME}\`.`,
    }),
    cron: cronSchema.optional(),
    interval: intervalSchema.optional(),
    timezone: timezoneSchema.default('UTC'),
    jitterSeconds: jitterSchema.default(0),
    overlap: overlapSchema.default('skip').openapi({
      description:
        'What Temporal does when an action is due while the previous action still runs. Default `skip`. (A run ' +
        'of the pipeline in progress always makes an action skip, unless the definition allows overlap.)',
    }),
    catchupWindowSeconds: catchupSchema.default(300),
    version: versionNumberSchema
      .optional()
      .openapi({ description: 'Pin a version; default: the newest at each action.' }),
    paused: z.boolean().default(false).openapi({ description: 'Create it paused. Default false.' }),
    note: noteSchema.optional().openapi({ description: 'Shown beside the paused state. Default: who created it.' }),
  })
  .superRefine(oneTiming(true))
  .openapi('CreateScheduleRequest');

const updateBodySchema = z
  .strictObject({
    cron: cronSchema.optional().openapi({ description: 'Replaces the cron expression or the interval.' }),
    interval: intervalSchema.optional(),
    timezone: timezoneSchema.optional(),
    jitterSeconds: jitterSchema.optional(),
    overlap: overlapSchema.optional(),
    catchupWindowSeconds: catchupSchema.optional(),
    version: versionNumberSchema
      .nullable()
      .optional()
      .openapi({ description: 'Pin a version; `null`: the newest at each action.' }),
  })
  .superRefine(oneTiming(false))
  .openapi('UpdateScheduleRequest');

const noteBodySchema = z.strictObject({ note: noteSchema.optional() }).openapi('ScheduleNoteRequest');

const triggerBodySchema = z
  .strictObject({
    overlap: overlapSchema.default('allow_all').openapi({ description: 'Default `allow_all`.' }),
  })
  .openapi('TriggerScheduleRequest');

const instantSchema = z.string().datetime({ offset: true }).openapi({ example: '2024-05-01T00:00:00Z' });

const backfillBodySchema = z
  .strictObject({
    start: instantSchema,
    end: instantSchema,
    overlap: overlapSchema.default('allow_all').openapi({
      description: 'Default `allow_all`, so every action of the range is taken (each is then started or skipped).',
    }),
  })
  .superRefine((body, ctx) => {
    const span = Date.parse(body.end) - Date.parse(body.start);
    if (!(span > 0)) ctx.addIssue({ code: 'custom', path: ['end'], message: 'must be after start' });
    else if (span > MAX_BACKFILL_DAYS * DAY_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['end'],
        message: `at most ${MAX_BACKFILL_DAYS} days (five years) after start`,
      });
    }
  })
  .openapi('BackfillScheduleRequest');

const triggerEventSchema = z
  .object({
    id: z.string(),
    kind: z.enum(TRIGGER_KINDS),
    source: z.string().openapi({ description: 'What fired it: a schedule id, a watched prefix, a monitoring window.' }),
    status: z.enum(TRIGGER_STATUSES),
    reason: z.string().nullable().openapi({ description: 'Why it was skipped, or what it started.' }),
    runId: z.string().nullable(),
    details: z.record(z.string(), z.unknown()).nullable(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('TriggerEvent');

const scheduleSchema = z
  .object({
    id: z.string().openapi({ description: 'The Temporal schedule id.', example: 'pipeline:flight-delays:nightly' }),
    pipeline: z.string(),
    name: z.string(),
    cron: z.string().nullable(),
    interval: z.object({ everySeconds: z.number(), offsetSeconds: z.number() }).nullable(),
    timezone: z.string(),
    jitterSeconds: z.number(),
    overlap: overlapSchema,
    catchupWindowSeconds: z.number(),
    version: z.number().int().nullable().openapi({ description: 'The pinned version; null: the newest.' }),
    state: z.object({ paused: z.boolean(), note: z.string().nullable() }),
    nextActionTimes: z
      .array(z.string().openapi({ format: 'date-time' }))
      .openapi({ description: `The next ${NEXT_ACTION_TIMES} (none while paused).` }),
    recentActions: z
      .array(
        z.object({
          scheduledAt: z.string().openapi({ format: 'date-time' }),
          takenAt: z.string().openapi({ format: 'date-time' }),
          workflowId: z.string(),
          trigger: triggerEventSchema
            .nullable()
            .openapi({ description: 'What the action did; null until its workflow recorded it.' }),
        }),
      )
      .openapi({ description: 'Oldest first, as many as Temporal keeps.' }),
    actions: z.object({ taken: z.number(), skippedOverlap: z.number(), missedCatchupWindow: z.number() }),
    createdAt: z.string().openapi({ format: 'date-time' }),
    updatedAt: z.string().nullable().openapi({ format: 'date-time' }),
    links: z.object({
      self: z.string(),
      temporalUi: z.string().optional().openapi({ description: 'The schedule in the Temporal UI.' }),
    }),
  })
  .openapi('PipelineSchedule');

const notFound = errorResponse('No such pipeline or schedule.');
const invalid = errorResponse('Invalid request: `error.details` names each field.');

const createRouteDef = createRoute({
  method: 'post',
  path: '/{name}/schedules',
  tags: ['schedules'],
  ...scoped('trigger'),
  summary: 'Schedule runs of a pipeline (cron or interval, on Temporal Schedules)',
  description:
    'Creates the Temporal schedule `pipeline:{name}:{schedule name}`. Each action starts a run through the trigger ' +
    'path: it is recorded in `GET /v1/pipelines/{name}/triggers`, and skipped (with why) while a run of the ' +
    'pipeline is in progress. Runs it starts have `trigger: schedule` and the schedule id as `triggeredBy`.',
  request: {
    params: z.object({ name: pipelineNameSchema }),
    body: { content: { 'application/json': { schema: createBodySchema } }, required: true },
  },
  responses: {
    201: jsonResponse('The schedule.', scheduleSchema),
    400: invalid,
    404: errorResponse('No such pipeline or version.'),
    409: errorResponse('The pipeline already has a schedule of this name.'),
  },
});

const listRouteDef = createRoute({
  method: 'get',
  path: '/{name}/schedules',
  tags: ['schedules'],
  ...scoped('read'),
  summary: 'The schedules of a pipeline, by name (paged)',
  request: { params: z.object({ name: pipelineNameSchema }), query: pageQuerySchema },
  responses: {
    200: jsonResponse('The schedules.', z.object({ schedules: z.array(scheduleSchema) })),
    400: invalid,
    404: errorResponse('No such pipeline.'),
  },
});

const getRouteDef = createRoute({
  method: 'get',
  path: '/{name}/schedules/{schedule}',
  tags: ['schedules'],
  ...scoped('read'),
  summary: 'A schedule: settings, state, next actions, and what its recent actions did',
  request: { params },
  responses: { 200: jsonResponse('The schedule.', scheduleSchema), 400: invalid, 404: notFound },
});

const updateRouteDef = createRoute({
  method: 'patch',
  path: '/{name}/schedules/{schedule}',
  tags: ['schedules'],
  ...scoped('trigger'),
  summary: 'Change some settings of a schedule (the others stay)',
  request: { params, body: { content: { 'application/json': { schema: updateBodySchema } }, required: true } },
  responses: { 200: jsonResponse('The schedule.', scheduleSchema), 400: invalid, 404: notFound },
});

const deleteRouteDef = createRoute({
  method: 'delete',
  path: '/{name}/schedules/{schedule}',
  tags: ['schedules'],
  ...scoped('trigger'),
  summary: 'Delete a schedule (actions already taken, their events and runs stay)',
  request: { params },
  responses: { 204: { description: 'Deleted.' }, 400: invalid, 404: notFound },
});

const pauseRouteDef = (action: 'pause' | 'unpause') =>
  createRoute({
    method: 'post',
    path: `/{name}/schedules/{schedule}/${action}`,
    tags: ['schedules'],
    ...scoped('trigger'),
    summary:
      action === 'pause'
        ? 'Pause a schedule, with a note (trigger and backfill still act)'
        : 'Unpause a schedule, with a note',
    request: {
      params,
      body: { content: { 'application/json': { schema: noteBodySchema } }, required: false },
    },
    responses: { 200: jsonResponse('The schedule.', scheduleSchema), 400: invalid, 404: notFound },
  });

const acceptedSchema = z
  .object({
    schedule: z.string(),
    actions: z.number().int().openapi({ description: 'How many actions were requested.' }),
  })
  .openapi('ScheduleActionsRequested');

const triggerRouteDef = createRoute({
  method: 'post',
  path: '/{name}/schedules/{schedule}/trigger',
  tags: ['schedules'],
  ...scoped('trigger'),
  summary: 'Take one action of a schedule now',
  description:
    'Each call takes a new action, recorded as its own trigger event (started, or skipped while a run of the ' +
    "pipeline is in progress). Temporal names an action's workflow by the second it is taken in " +
    '(`trigger:{schedule id}-{time}`) and takes one action per schedule per second, so calls on one schedule ' +
    `wait their turn: each is taken at least ${TRIGGER_SPACING_MS} ms after the previous one (the answer comes ` +
    'that much later). Calls through different API processes in the same second may be taken as one action.',
  request: {
    params,
    body: { content: { 'application/json': { schema: triggerBodySchema } }, required: false },
  },
  responses: { 202: jsonResponse('The action was requested.', acceptedSchema), 400: invalid, 404: notFound },
});

const backfillRouteDef = createRoute({
  method: 'post',
  path: '/{name}/schedules/{schedule}/backfill',
  tags: ['schedules'],
  ...scoped('trigger'),
  summary: 'Take now the actions a schedule would have taken over a time range',
  description:
    `The range includes both ends, spans at most ${MAX_BACKFILL_DAYS} days (five years) and holds at most ` +
    `${MAX_BACKFILL_ACTIONS} actions. Each action is recorded as a trigger event, started or skipped, and its run ` +
    "gets the action's scheduled time as its trigger time (a window `relativeTo: trigger` ends there). Actions are " +
    'named by their scheduled time: backfilling a range that already ran finds the earlier events and starts ' +
    'nothing again (idempotent by design).',
  request: {
    params,
    body: { content: { 'application/json': { schema: backfillBodySchema } }, required: true },
  },
  responses: { 202: jsonResponse('The actions were requested.', acceptedSchema), 400: invalid, 404: notFound },
});

const triggersRouteDef = createRoute({
  method: 'get',
  path: '/{name}/triggers',
  tags: ['schedules'],
  ...scoped('read'),
  summary: 'Trigger events of a pipeline, newest first (paged): what started a run, or was skipped and why',
  request: {
    params: z.object({ name: pipelineNameSchema }),
    query: pageQuerySchema.extend({
      kind: z
        .enum(TRIGGER_KINDS)
        .optional()
        .openapi({ param: { name: 'kind', in: 'query' } }),
      source: z
        .string()
        .min(1)
        .max(512)
        .optional()
        .openapi({ param: { name: 'source', in: 'query' }, description: 'A schedule id, a watched prefix, ...' }),
    }),
  },
  responses: {
    200: jsonResponse('The events.', z.object({ triggers: z.array(triggerEventSchema) })),
    400: invalid,
    404: errorResponse('No such pipeline.'),
  },
});

function triggerJson(event: PipelineTrigger): z.infer<typeof triggerEventSchema> {
  return {
    id: event.id,
    kind: event.kind,
    source: event.source,
    status: event.status,
    reason: event.reason,
    runId: event.runId,
    details: event.details ?? null,
    createdAt: iso(event.createdAt),
  };
}

/** `/v1/pipelines/{name}/schedules` and `/v1/pipelines/{name}/triggers`. */
export function pipelineSchedules(deps: SchedulesDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const scheduling: PipelineSchedulesDeps = {
    client: deps.runner.client,
    pipelines: deps.runner.pipelines,
    triggers: deps.triggers,
    taskQueue: deps.runner.taskQueue,
  };
  const uiBase = deps.temporalUiUrl
    ? `${deps.temporalUiUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(deps.runner.client.options.namespace)}`
    : undefined;

  const json = (url: string, s: PipelineSchedule): z.infer<typeof scheduleSchema> => ({
    id: s.id,
    pipeline: s.pipeline,
    name: s.name,
    cron: s.cron,
    interval: s.interval,
    timezone: s.timezone,
    jitterSeconds: s.jitterSeconds,
    overlap: s.overlap,
    catchupWindowSeconds: s.catchupWindowSeconds,
    version: s.version,
    state: { paused: s.paused, note: s.note },
    nextActionTimes: s.nextActionTimes.map((t) => iso(t)),
    recentActions: s.recentActions.map((a) => ({
      scheduledAt: iso(a.scheduledAt),
      takenAt: iso(a.takenAt),
      workflowId: a.workflowId,
      trigger: a.trigger ? triggerJson(a.trigger) : null,
    })),
    actions: {
      taken: s.actionsTaken,
      skippedOverlap: s.actionsSkippedOverlap,
      missedCatchupWindow: s.actionsMissedCatchupWindow,
    },
    createdAt: iso(s.createdAt),
    updatedAt: iso(s.updatedAt),
    links: {
      self: new URL(`/v1/pipelines/${s.pipeline}/schedules/${s.name}`, url).href,
      ...(uiBase ? { temporalUi: `${uiBase}/schedules/${encodeURIComponent(s.id)}` } : {}),
    },
  });

  router.openapi(createRouteDef, async (c) => {
    const { name: pipeline } = c.req.valid('param');
    const { name, note, ...settings } = c.req.valid('json');
    const schedule = await createPipelineSchedule(scheduling, {
      ...settings,
      pipeline,
      name,
      note: note ?? `created by ${actorOf(c)}`,
    });
    c.header('location', `/v1/pipelines/${pipeline}/schedules/${name}`);
    return c.json(json(c.req.url, schedule), 201);
  });

  router.openapi(listRouteDef, async (c) => {
    const { name } = c.req.valid('param');
    const schedules = await listPipelineSchedules(scheduling, name, c.req.valid('query'));
    return c.json({ schedules: schedules.map((s) => json(c.req.url, s)) }, 200);
  });

  router.openapi(getRouteDef, async (c) => {
    const { name, schedule } = c.req.valid('param');
    return c.json(json(c.req.url, await describePipelineSchedule(scheduling, name, schedule)), 200);
  });

  router.openapi(updateRouteDef, async (c) => {
    const { name, schedule } = c.req.valid('param');
    const updated = await updatePipelineSchedule(scheduling, name, schedule, c.req.valid('json'));
    return c.json(json(c.req.url, updated), 200);
  });

  router.openapi(deleteRouteDef, async (c) => {
    const { name, schedule } = c.req.valid('param');
    await deletePipelineSchedule(scheduling, name, schedule);
    return c.body(null, 204);
  });

  for (const action of ['pause', 'unpause'] as const) {
    router.openapi(pauseRouteDef(action), async (c) => {
      const { name, schedule } = c.req.valid('param');
      const note = c.req.valid('json').note ?? `${action}d by ${actorOf(c)}`;
      const updated = await setPipelineSchedulePaused(scheduling, name, schedule, action === 'pause', note);
      return c.json(json(c.req.url, updated), 200);
    });
  }

  router.openapi(triggerRouteDef, async (c) => {
    const { name, schedule } = c.req.valid('param');
    await triggerPipelineSchedule(scheduling, name, schedule, c.req.valid('json').overlap);
    return c.json({ schedule: pipelineScheduleId(name, schedule), actions: 1 }, 202);
  });

  router.openapi(backfillRouteDef, async (c) => {
    const { name, schedule } = c.req.valid('param');
    const { start, end, overlap } = c.req.valid('json');
    const { actions } = await backfillPipelineSchedule(scheduling, name, schedule, {
      start: new Date(start),
      end: new Date(end),
      overlap,
    });
    return c.json({ schedule: pipelineScheduleId(name, schedule), actions }, 202);
  });

  router.openapi(triggersRouteDef, async (c) => {
    const { name } = c.req.valid('param');
    const { limit, offset, kind, source } = c.req.valid('query');
    if (!(await deps.runner.pipelines.getVersion(name))) throw new NotFoundError(`pipeline ${name} does not exist`);
    const events = await deps.triggers.list(
      name,
      { limit, offset },
      { ...(kind ? { kind } : {}), ...(source ? { source } : {}) },
    );
    return c.json({ triggers: events.map(triggerJson) }, 200);
  });

  return router;
}
