/**
 * Pipeline schedules, on Temporal Schedules (not a timer of our own): each is a Temporal schedule whose id names its
 * pipeline (`pipeline:<pipeline>:<name>`, as `temporal schedule list` and the UI's Schedules page show it) and whose
 * action starts `triggerPipelineRun` on the main task queue. That workflow goes through the one trigger path
 * (pipelines/triggers.ts): each action is recorded in `pipeline_triggers` as started or skipped (a run of the pipeline
 * in progress), and the runs it starts carry `trigger: schedule` and the schedule id as `triggeredBy`.
 *
 * Temporal holds the schedule's whole state; nothing is stored here but the trigger events. A cron expression is
 * kept as its calendar's comment, so a describe shows the expression as it was given.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ServiceError,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
  type ScheduleOptionsStartWorkflowAction,
  type ScheduleOverlapPolicy,
  type ScheduleSpec,
} from '@temporalio/client';
import { SearchAttributeKeys } from '../core/constants.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import type { PipelineTrigger } from '../schema/index.js';
import type { Page } from '../storage/page.js';
import type { PipelineStore } from '../storage/pipeline-store.js';
import type { TriggerStore } from '../storage/trigger-store.js';
import { triggerPipelineRun, type TriggerPipelineRunInput } from '../workflows/index.js';
import { countCronTimes, countIntervalTimes, CronSyntaxError, parseCron } from './cron.js';

export const SCHEDULE_OVERLAP_POLICIES = [
  'skip',
  'buffer_one',
  'buffer_all',
  'cancel_other',
  'terminate_other',
  'allow_all',
] as const;
/** What Temporal does when an action is due while the previous one still runs (the trigger workflow, not the run). */
export type ScheduleOverlap = (typeof SCHEDULE_OVERLAP_POLICIES)[number];

/** A schedule's name when the caller gives none. */
export const DEFAULT_SCHEDULE_NAME = 'default';
/** Most actions one backfill may take: each is a workflow and a trigger event. */
export const MAX_BACKFILL_ACTIONS = 1000;
/** Longest backfill range, whatever it holds: five years (the actions it holds are limited apart). */
export const MAX_BACKFILL_DAYS = 5 * 366;
const DAY_MS = 86_400_000;
/** How many upcoming action times a description lists. */
export const NEXT_ACTION_TIMES = 5;
/** Bound on one action's workflow: it records an event and starts (or skips) a run, in seconds when Temporal is up. */
const ACTION_TIMEOUT = '10 minutes';

/** The Temporal schedule id of a pipeline's schedule: readable, and naming its pipeline. */
export function pipelineScheduleId(pipeline: string, name: string): string {
  return `pipeline:${pipeline}:${name}`;
}

const scheduleIdPrefix = (pipeline: string) => `pipeline:${pipeline}:`;

/** The workflow id of a schedule's actions; Temporal appends each action's time (`...-2024-05-01T02:00:00Z`). */
export function scheduleActionWorkflowId(scheduleId: string): string {
  return `trigger:${scheduleId}`;
}

/**
 * The dedupe key of one action's trigger event: `triggerPipelineRun` (workflows/trigger-run.ts) derives it from its
 * kind and workflow id, so the event of each of a schedule's recent actions is found by its workflow id.
 */
export function scheduleActionDedupeKey(actionWorkflowId: string): string {
  return `schedule:${actionWorkflowId}`;
}

export interface ScheduleInterval {
  readonly everySeconds: number;
  /** Shift from the multiples of `everySeconds` since the Unix epoch. */
  readonly offsetSeconds: number;
}

/** When a schedule acts and how: exactly one of `cron` and `interval`. */
export interface ScheduleSettings {
  /** Five fields, read in `timezone`. */
  readonly cron?: string;
  readonly interval?: ScheduleInterval;
  /** IANA time zone of the cron expression. */
  readonly timezone: string;
  /** Each action is delayed by a random 0 to this many seconds. */
  readonly jitterSeconds: number;
  readonly overlap: ScheduleOverlap;
  /** After an outage of Temporal, actions missed by at most this long are still taken (at least 10). */
  readonly catchupWindowSeconds: number;
  /** The pipeline version each action runs; absent: the newest when the action is taken. */
  readonly version?: number;
}

export interface CreateScheduleRequest extends ScheduleSettings {
  readonly pipeline: string;
  readonly name: string;
  readonly paused?: boolean;
  /** Shown beside the paused state (why it is paused, who created it). */
  readonly note?: string;
}

/** A change of some settings: a `cron` or an `interval` replaces the timing; `version: null` follows the newest. */
export type ScheduleChanges = Partial<Omit<ScheduleSettings, 'version'>> & { readonly version?: number | null };

/** What one action did: the trigger event it recorded (absent while its workflow has not recorded one yet). */
export interface ScheduleActionOutcome {
  /** The nominal time (a backfill's past time, or now for a trigger), jitter included. */
  readonly scheduledAt: Date;
  readonly takenAt: Date;
  readonly workflowId: string;
  readonly trigger?: PipelineTrigger;
}

export interface PipelineSchedule {
  readonly id: string;
  readonly pipeline: string;
  readonly name: string;
  readonly cron: string | null;
  readonly interval: ScheduleInterval | null;
  readonly timezone: string;
  readonly jitterSeconds: number;
  readonly overlap: ScheduleOverlap;
  readonly catchupWindowSeconds: number;
  readonly version: number | null;
  readonly paused: boolean;
  readonly note: string | null;
  readonly nextActionTimes: readonly Date[];
  /** Oldest first, as many as Temporal keeps (about 10), each with its trigger event. */
  readonly recentActions: readonly ScheduleActionOutcome[];
  readonly actionsTaken: number;
  readonly actionsSkippedOverlap: number;
  readonly actionsMissedCatchupWindow: number;
  readonly createdAt: Date;
  readonly updatedAt: Date | null;
}

export interface PipelineSchedulesDeps {
  readonly client: Client;
  readonly pipelines: PipelineStore;
  readonly triggers: TriggerStore;
  /** The main task queue, where `triggerPipelineRun` and the trigger activity run. */
  readonly taskQueue: string;
}

/** Thrown when a pipeline, its version or its schedule does not exist. */
export class PipelineScheduleNotFoundError extends DomainError {
  override readonly name = 'PipelineScheduleNotFoundError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('not_found', message, options);
  }
}

/** Thrown when a schedule of that name already exists for the pipeline. */
export class PipelineScheduleExistsError extends DomainError {
  override readonly name = 'PipelineScheduleExistsError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('conflict', message, { code: 'schedule_exists', ...options });
  }
}

/** Thrown when a schedule's settings are invalid; `details` names the field as the API's validation errors do. */
export class InvalidScheduleError extends DomainError {
  override readonly name = 'InvalidScheduleError';
  constructor(field: string, problem: string, options?: DomainErrorOptions) {
    super('invalid', `Invalid request: body.${field}: ${problem}`, {
      details: [{ location: 'body', path: field, problem }],
      ...options,
    });
  }
}

const NOT_A_TIME_ZONE = 'is not an IANA time zone (such as UTC or Europe/Paris)';

/**
 * What is wrong with a time zone for a schedule, or undefined when Temporal takes it. It must be an IANA name that
 * Intl knows (offsets like `+01:00` are refused), spelled with the database's case: Intl reads `europe/paris` as
 * Europe/Paris, but Temporal's server (Go's `time.LoadLocation`) reads names case-sensitively and would refuse it.
 * Links (`Asia/Kolkata`, `Etc/UTC`) are taken as spelled.
 */
export function timeZoneProblem(timezone: string): string | undefined {
  const quoted = JSON.stringify(timezone);
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(timezone)) return `${quoted} ${NOT_A_TIME_ZONE}`;
  let canonical: string;
  try {
    canonical = new Intl.DateTimeFormat('en-US', { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    return `${quoted} ${NOT_A_TIME_ZONE}`;
  }
  if (canonical === timezone) return undefined;
  // Every name of the database starts each of its parts with a capital (Europe/Paris, America/Port-au-Prince, UTC).
  const miscased =
    canonical.toLowerCase() === timezone.toLowerCase() || timezone.split('/').some((part) => !/^[A-Z]/.test(part));
  return miscased
    ? `${quoted} is not spelled as the IANA time zone database spells it (time zone names are case-sensitive): ` +
        `use ${JSON.stringify(canonical)}`
    : undefined;
}

/** Whether Temporal (and so every schedule's spec) knows the IANA time zone, spelled as given. */
export function isKnownTimeZone(timezone: string): boolean {
  return timeZoneProblem(timezone) === undefined;
}

/**
 * Checks settings Temporal would refuse or read differently, naming the field: exactly one of cron and interval, a
 * cron Temporal reads the same way, an offset below the interval, a known time zone.
 *
 * @throws InvalidScheduleError
 */
export function checkScheduleSettings(settings: ScheduleSettings): void {
  if ((settings.cron === undefined) === (settings.interval === undefined)) {
    throw new InvalidScheduleError('cron', 'give exactly one of cron and interval');
  }
  if (settings.cron !== undefined) {
    try {
      parseCron(settings.cron);
    } catch (error) {
      if (error instanceof CronSyntaxError) throw new InvalidScheduleError('cron', error.message);
      throw error;
    }
  }
  if (settings.interval && settings.interval.offsetSeconds >= settings.interval.everySeconds) {
    throw new InvalidScheduleError('interval.offsetSeconds', 'must be less than interval.everySeconds');
  }
  const timezoneProblem = timeZoneProblem(settings.timezone);
  if (timezoneProblem) throw new InvalidScheduleError('timezone', timezoneProblem);
}

const TEMPORAL_OVERLAP: Record<ScheduleOverlap, ScheduleOverlapPolicy> = {
  skip: 'SKIP',
  buffer_one: 'BUFFER_ONE',
  buffer_all: 'BUFFER_ALL',
  cancel_other: 'CANCEL_OTHER',
  terminate_other: 'TERMINATE_OTHER',
  allow_all: 'ALLOW_ALL',
};

function overlapOf(policy: ScheduleOverlapPolicy): ScheduleOverlap {
  return (policy ?? 'SKIP').toLowerCase() as ScheduleOverlap;
}

function specOf(settings: ScheduleSettings): ScheduleSpec {
  return {
    // The expression again as a comment: Temporal keeps it on the calendar it compiles, so a describe shows it.
    ...(settings.cron !== undefined ? { cronExpressions: [`${settings.cron.trim()} # ${settings.cron.trim()}`] } : {}),
    ...(settings.interval
      ? {
          intervals: [{ every: `${settings.interval.everySeconds}s`, offset: `${settings.interval.offsetSeconds}s` }],
        }
      : {}),
    timezone: settings.timezone,
    jitter: `${settings.jitterSeconds}s`,
  };
}

function actionOf(deps: PipelineSchedulesDeps, pipeline: string, scheduleId: string, version: number | undefined) {
  const input: TriggerPipelineRunInput = {
    pipeline,
    ...(version !== undefined ? { version } : {}),
    kind: 'schedule',
    source: scheduleId,
  };
  return {
    type: 'startWorkflow',
    workflowType: triggerPipelineRun,
    workflowId: scheduleActionWorkflowId(scheduleId),
    taskQueue: deps.taskQueue,
    args: [input],
    workflowExecutionTimeout: ACTION_TIMEOUT,
    typedSearchAttributes: [
      { key: SearchAttributeKeys.pipeline, value: pipeline },
      { key: SearchAttributeKeys.trigger, value: 'schedule' },
    ],
    staticSummary: `trigger ${pipeline} (schedule ${scheduleId})`,
  } satisfies ScheduleOptionsStartWorkflowAction<typeof triggerPipelineRun>;
}

function policiesOf(settings: ScheduleSettings) {
  return { overlap: TEMPORAL_OVERLAP[settings.overlap], catchupWindow: `${settings.catchupWindowSeconds}s` } as const;
}

/** A spec Temporal refused (its parser is the last word): the 400 names the field its message is about. */
function invalidSpec(error: Error, settings: ScheduleSettings): InvalidScheduleError {
  const field = /time ?zone|location/i.test(error.message)
    ? 'timezone'
    : /interval|phase/i.test(error.message)
      ? 'interval'
      : /jitter/i.test(error.message)
        ? 'jitterSeconds'
        : settings.cron !== undefined
          ? 'cron'
          : 'interval';
  return new InvalidScheduleError(field, error.message, { cause: error });
}

/** gRPC's status code INVALID_ARGUMENT. */
const GRPC_INVALID_ARGUMENT = 3;

/**
 * The settings error in a refusal of a schedule's create or update: the client's own check (a TypeError) or the
 * server's (a ServiceError of status INVALID_ARGUMENT, such as a time zone its database lacks); else undefined.
 */
function refusedSpec(error: unknown, settings: ScheduleSettings): InvalidScheduleError | undefined {
  if (error instanceof TypeError) return invalidSpec(error, settings);
  if (!(error instanceof ServiceError)) return undefined;
  const cause = error.cause as { code?: unknown; details?: unknown } | undefined;
  if (cause?.code !== GRPC_INVALID_ARGUMENT && !/INVALID_ARGUMENT/.test(String(cause))) return undefined;
  const message = typeof cause?.details === 'string' && cause.details ? cause.details : error.message;
  return invalidSpec(new Error(message, { cause: error }), settings);
}

/** Runs a call on an existing schedule, answering a missing one with a 404 that names it. */
async function onSchedule<T>(pipeline: string, name: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) {
      throw new PipelineScheduleNotFoundError(`pipeline ${pipeline} has no schedule ${name}`, { cause: error });
    }
    throw error;
  }
}

async function requirePipeline(deps: PipelineSchedulesDeps, pipeline: string, version?: number): Promise<void> {
  const found = await deps.pipelines.getVersion(pipeline, version);
  if (found) return;
  if (version === undefined) throw new PipelineScheduleNotFoundError(`pipeline ${pipeline} does not exist`);
  const exists = await deps.pipelines.getVersion(pipeline);
  throw new PipelineScheduleNotFoundError(
    exists ? `pipeline ${pipeline} has no version ${version}` : `pipeline ${pipeline} does not exist`,
  );
}

/** The settings of a described schedule, as they were given. */
function settingsOf(description: ScheduleDescription): ScheduleSettings {
  const { spec, policies, action } = description;
  const calendar = spec.calendars?.[0];
  const interval = spec.intervals?.[0];
  const input = (action.type === 'startWorkflow' ? action.args?.[0] : undefined) as TriggerPipelineRunInput | undefined;
  return {
    ...(calendar?.comment ? { cron: calendar.comment } : {}),
    ...(interval
      ? { interval: { everySeconds: interval.every / 1000, offsetSeconds: (interval.offset ?? 0) / 1000 } }
      : {}),
    timezone: spec.timezone || 'UTC',
    jitterSeconds: (spec.jitter ?? 0) / 1000,
    overlap: overlapOf(policies.overlap),
    catchupWindowSeconds: policies.catchupWindow / 1000,
    ...(typeof input?.version === 'number' ? { version: input.version } : {}),
  };
}

async function scheduleOf(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  name: string,
  description: ScheduleDescription,
): Promise<PipelineSchedule> {
  const settings = settingsOf(description);
  const actions = description.info.recentActions;
  const keys = actions.map((a) => scheduleActionDedupeKey(a.action.workflow.workflowId));
  const events = new Map((await deps.triggers.findByDedupeKeys(keys)).map((e) => [e.dedupeKey, e]));
  return {
    id: description.scheduleId,
    pipeline,
    name,
    cron: settings.cron ?? null,
    interval: settings.interval ?? null,
    timezone: settings.timezone,
    jitterSeconds: settings.jitterSeconds,
    overlap: settings.overlap,
    catchupWindowSeconds: settings.catchupWindowSeconds,
    version: settings.version ?? null,
    paused: description.state.paused,
    note: description.state.note || null,
    nextActionTimes: description.info.nextActionTimes.slice(0, NEXT_ACTION_TIMES),
    recentActions: actions.map((a, i) => {
      const trigger = events.get(keys[i] ?? '');
      return {
        scheduledAt: a.scheduledAt,
        takenAt: a.takenAt,
        workflowId: a.action.workflow.workflowId,
        ...(trigger ? { trigger } : {}),
      };
    }),
    actionsTaken: description.info.numActionsTaken,
    actionsSkippedOverlap: description.info.numActionsSkippedOverlap,
    actionsMissedCatchupWindow: description.info.numActionsMissedCatchupWindow,
    createdAt: description.info.createdAt,
    updatedAt: description.info.lastUpdatedAt ?? null,
  };
}

function handleOf(deps: PipelineSchedulesDeps, pipeline: string, name: string): ScheduleHandle {
  return deps.client.schedule.getHandle(pipelineScheduleId(pipeline, name));
}

/**
 * Creates a schedule of a pipeline in Temporal. Not idempotent: a second create of the same name is refused.
 *
 * @throws PipelineScheduleNotFoundError when the pipeline or the pinned version does not exist.
 * @throws PipelineScheduleExistsError when the pipeline already has a schedule of that name.
 * @throws InvalidScheduleError naming the field, when Temporal would refuse the settings.
 */
export async function createPipelineSchedule(
  deps: PipelineSchedulesDeps,
  request: CreateScheduleRequest,
): Promise<PipelineSchedule> {
  checkScheduleSettings(request);
  await requirePipeline(deps, request.pipeline, request.version);
  const scheduleId = pipelineScheduleId(request.pipeline, request.name);
  try {
    await deps.client.schedule.create({
      scheduleId,
      spec: specOf(request),
      action: actionOf(deps, request.pipeline, scheduleId, request.version),
      policies: policiesOf(request),
      state: { paused: request.paused ?? false, ...(request.note ? { note: request.note } : {}) },
      memo: { pipeline: request.pipeline, schedule: request.name },
    });
  } catch (error) {
    if (error instanceof ScheduleAlreadyRunning) {
      throw new PipelineScheduleExistsError(`pipeline ${request.pipeline} already has a schedule ${request.name}`, {
        cause: error,
      });
    }
    throw refusedSpec(error, request) ?? error;
  }
  return describePipelineSchedule(deps, request.pipeline, request.name);
}

/**
 * A schedule with its settings, state, next action times, and its recent actions each with the trigger event it
 * recorded (run started, or skipped and why).
 *
 * @throws PipelineScheduleNotFoundError
 */
export async function describePipelineSchedule(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  name: string,
): Promise<PipelineSchedule> {
  const description = await onSchedule(pipeline, name, () => handleOf(deps, pipeline, name).describe());
  return scheduleOf(deps, pipeline, name, description);
}

/**
 * Ids of the pipeline schedules (their action is `triggerPipelineRun`) whose id starts with `prefix`. Asks Temporal to
 * filter (`ScheduleId STARTS_WITH`); a server whose visibility cannot is asked for every schedule instead.
 */
async function scheduleIdsStartingWith(client: Client, prefix: string): Promise<string[]> {
  const collect = async (query: string | undefined) => {
    const ids: string[] = [];
    for await (const summary of client.schedule.list({ pageSize: 1000, ...(query ? { query } : {}) })) {
      const isOurs =
        summary.scheduleId.startsWith(prefix) &&
        (summary.action === undefined || summary.action.workflowType === triggerPipelineRun.name);
      if (isOurs) ids.push(summary.scheduleId);
    }
    return ids;
  };
  try {
    // Pipeline names hold no quotes or backslashes: the prefix needs no escaping.
    return await collect(`ScheduleId STARTS_WITH "${prefix}"`);
  } catch (error) {
    if (!(error instanceof ServiceError) || !/INVALID_ARGUMENT/.test(String(error.cause))) throw error;
    return collect(undefined);
  }
}

/**
 * A pipeline's schedules by id, each described. Temporal's list is eventually consistent: a schedule created a
 * moment ago may be missing for a second; one deleted a moment ago is left out.
 *
 * @throws PipelineScheduleNotFoundError when the pipeline does not exist.
 */
export async function listPipelineSchedules(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  page: Page,
): Promise<PipelineSchedule[]> {
  await requirePipeline(deps, pipeline);
  const prefix = scheduleIdPrefix(pipeline);
  const names = (await scheduleIdsStartingWith(deps.client, prefix)).map((id) => id.slice(prefix.length));
  const wanted = names.sort().slice(page.offset, page.offset + page.limit);
  const described: PipelineSchedule[] = [];
  // A few at a time: each is one describe and one query.
  for (let i = 0; i < wanted.length; i += 10) {
    const batch = await Promise.all(
      wanted.slice(i, i + 10).map((name) =>
        describePipelineSchedule(deps, pipeline, name).catch((error: unknown) => {
          if (error instanceof PipelineScheduleNotFoundError) return undefined;
          throw error;
        }),
      ),
    );
    described.push(...batch.filter((s): s is PipelineSchedule => s !== undefined));
  }
  return described;
}

/**
 * Changes some of a schedule's settings; the others stay. A `cron` replaces an interval and the other way round.
 *
 * @throws PipelineScheduleNotFoundError when the schedule, or a pinned version, does not exist.
 * @throws InvalidScheduleError naming the field.
 */
export async function updatePipelineSchedule(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  name: string,
  changes: ScheduleChanges,
): Promise<PipelineSchedule> {
  if (changes.cron !== undefined && changes.interval !== undefined) {
    throw new InvalidScheduleError('cron', 'give exactly one of cron and interval');
  }
  const handle = handleOf(deps, pipeline, name);
  const current = settingsOf(await onSchedule(pipeline, name, () => handle.describe()));
  const retimed = changes.cron !== undefined || changes.interval !== undefined;
  const timing = retimed ? changes : current;
  const version = changes.version === null ? undefined : (changes.version ?? current.version);
  const settings: ScheduleSettings = {
    ...(timing.cron !== undefined ? { cron: timing.cron } : {}),
    ...(timing.interval !== undefined ? { interval: timing.interval } : {}),
    timezone: changes.timezone ?? current.timezone,
    jitterSeconds: changes.jitterSeconds ?? current.jitterSeconds,
    overlap: changes.overlap ?? current.overlap,
    catchupWindowSeconds: changes.catchupWindowSeconds ?? current.catchupWindowSeconds,
    ...(version !== undefined ? { version } : {}),
  };
  checkScheduleSettings(settings);
  if (typeof changes.version === 'number') await requirePipeline(deps, pipeline, changes.version);
  const scheduleId = pipelineScheduleId(pipeline, name);
  try {
    await onSchedule(pipeline, name, () =>
      handle.update((previous) => ({
        ...previous,
        spec: specOf(settings),
        action: actionOf(deps, pipeline, scheduleId, settings.version),
        policies: { ...previous.policies, ...policiesOf(settings) },
      })),
    );
  } catch (error) {
    throw refusedSpec(error, settings) ?? error;
  }
  return describePipelineSchedule(deps, pipeline, name);
}

/** Pauses (no scheduled actions are taken; trigger and backfill still act) or unpauses a schedule, with a note. */
export async function setPipelineSchedulePaused(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  name: string,
  paused: boolean,
  note: string,
): Promise<PipelineSchedule> {
  const handle = handleOf(deps, pipeline, name);
  await onSchedule(pipeline, name, () => (paused ? handle.pause(note) : handle.unpause(note)));
  return describePipelineSchedule(deps, pipeline, name);
}

/**
 * Temporal names a manual action's workflow by its second (`trigger:<schedule id>-<time to the second>`), and the
 * action's trigger event is keyed by that workflow id: two "trigger now" in one second would be one action (Temporal
 * drops the second while the first runs, and its event would be the first's). So this process takes a schedule's
 * triggers one at a time, each at least this long after the previous one returned: each lands in a second of its own.
 */
export const TRIGGER_SPACING_MS = 1_100;

/** Per schedule id: the latest trigger call of this process, settled with when it returned. */
const latestTriggers = new Map<string, Promise<number>>();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Takes one action now, paused or not: every call a new action, with its own trigger event (calls in quick
 * succession wait their turn, a second apart; see {@link TRIGGER_SPACING_MS}). Default overlap `allow_all`: the
 * action always runs, and the trigger path still skips it (recorded, with why) when a run of the pipeline is in
 * progress.
 */
export async function triggerPipelineSchedule(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  name: string,
  overlap: ScheduleOverlap = 'allow_all',
): Promise<void> {
  const scheduleId = pipelineScheduleId(pipeline, name);
  const previous = latestTriggers.get(scheduleId);
  let done = (_at: number) => {};
  const mine = new Promise<number>((resolve) => (done = resolve));
  latestTriggers.set(scheduleId, mine);
  try {
    if (previous) {
      const wait = (await previous) + TRIGGER_SPACING_MS - Date.now();
      if (wait > 0) await sleep(wait);
    }
    await onSchedule(pipeline, name, () => handleOf(deps, pipeline, name).trigger(TEMPORAL_OVERLAP[overlap]));
  } finally {
    done(Date.now());
    // Forget it once no later call can need it (none came after it, and its spacing has passed).
    setTimeout(() => {
      if (latestTriggers.get(scheduleId) === mine) latestTriggers.delete(scheduleId);
    }, TRIGGER_SPACING_MS).unref();
  }
}

/**
 * Takes now, all at once, the actions the schedule would have taken from `start` to `end` (both included), paused
 * or not. Default overlap `allow_all`, so each is taken; the trigger path records each as started or skipped. Each
 * action is named by its scheduled time, so backfilling a range again finds the events (and runs) of the actions
 * already taken for it: idempotent by design, nothing runs twice.
 *
 * @returns how many actions the range holds (the count Temporal takes).
 * @throws InvalidScheduleError naming `end` when the range holds more than {@link MAX_BACKFILL_ACTIONS}.
 */
export async function backfillPipelineSchedule(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  name: string,
  range: { readonly start: Date; readonly end: Date; readonly overlap?: ScheduleOverlap },
): Promise<{ readonly actions: number }> {
  if (range.end.getTime() <= range.start.getTime()) throw new InvalidScheduleError('end', 'must be after start');
  if (range.end.getTime() - range.start.getTime() > MAX_BACKFILL_DAYS * DAY_MS) {
    throw new InvalidScheduleError('end', `at most ${MAX_BACKFILL_DAYS} days (five years) after start`);
  }
  const handle = handleOf(deps, pipeline, name);
  const settings = settingsOf(await onSchedule(pipeline, name, () => handle.describe()));
  const actions = settings.interval
    ? countIntervalTimes(settings.interval.everySeconds, settings.interval.offsetSeconds, range.start, range.end)
    : settings.cron !== undefined
      ? countCronTimes(parseCron(settings.cron), settings.timezone, range.start, range.end, MAX_BACKFILL_ACTIONS)
      : 0;
  if (actions > MAX_BACKFILL_ACTIONS) {
    throw new InvalidScheduleError(
      'end',
      `the range holds more than ${MAX_BACKFILL_ACTIONS} actions; backfill a shorter range at a time`,
    );
  }
  await onSchedule(pipeline, name, () =>
    handle.backfill({ start: range.start, end: range.end, overlap: TEMPORAL_OVERLAP[range.overlap ?? 'allow_all'] }),
  );
  return { actions };
}

/** Deletes a schedule; actions already started finish, their events and runs stay. */
export async function deletePipelineSchedule(
  deps: PipelineSchedulesDeps,
  pipeline: string,
  name: string,
): Promise<void> {
  await onSchedule(pipeline, name, () => handleOf(deps, pipeline, name).delete());
}
