/**
 * Aggregates of the platform's own activity, read from the tables that record it: runs by pipeline, trigger, status
 * and outcome; finished stages' durations; trigger events; monitoring windows and actions. What `GET /metrics`
 * exposes as the platform's metrics (server/platform-metrics.ts). Read-only.
 */
/** What the stats are read through: the platform's pg Pool (or anything that answers a query like it). */
export interface StatsQueryable {
  query(text: string, values: unknown[]): Promise<{ rows: unknown[] }>;
}

export interface RunCount {
  readonly pipeline: string;
  /** What started the runs: http, schedule, new_data, monitoring, ... */
  readonly trigger: string;
  readonly status: string;
  /** `''` while the run has none (in progress, failed, cancelled). */
  readonly outcome: string;
  readonly count: number;
}

/**
 * Finished stage rows of one stage and status whose duration exceeds exactly `bucket` of the bounds: `bucket` 0
 * means at most the first bound, `bounds.length` above the last.
 */
export interface StageDurationCount {
  readonly stage: string;
  readonly status: string;
  readonly bucket: number;
  readonly count: number;
  /** Sum of their durations in seconds. */
  readonly sum: number;
}

export interface TriggerEventCount {
  readonly pipeline: string;
  readonly kind: string;
  readonly status: string;
  readonly count: number;
}

export interface MonitoringWindowCount {
  readonly deployment: string;
  readonly breached: boolean;
  readonly count: number;
}

export interface MonitoringActionCount {
  readonly deployment: string;
  readonly kind: string;
  readonly status: string;
  readonly count: number;
}

export interface PlatformStats {
  readonly runs: readonly RunCount[];
  readonly stageDurations: readonly StageDurationCount[];
  readonly triggerEvents: readonly TriggerEventCount[];
  readonly monitoringWindows: readonly MonitoringWindowCount[];
  readonly monitoringActions: readonly MonitoringActionCount[];
}

export const EMPTY_PLATFORM_STATS: PlatformStats = {
  runs: [],
  stageDurations: [],
  triggerEvents: [],
  monitoringWindows: [],
  monitoringActions: [],
};

// One statement, so one connection and one round trip, and every aggregate is read from the same snapshot. Each
// part is a grouped scan of its table. A stage row's bucket is the number of bounds strictly below its duration
// (width_bucket counts the bounds at or below it; a duration equal to a bound belongs in that bound's bucket).
const PLATFORM_STATS_SQL = `
select
  (select coalesce(json_agg(t), '[]'::json) from (
    select p.name as pipeline, r.trigger, r.status, coalesce(r.outcome, '') as outcome, count(*)::int as count
    from pipeline_runs r
    join pipeline_versions v on v.id = r.pipeline_version_id
    join pipelines p on p.id = v.pipeline_id
    group by 1, 2, 3, 4
  ) t) as runs,
  (select coalesce(json_agg(t), '[]'::json) from (
    select stage, status, bucket, count(*)::int as count, sum(seconds)::float8 as sum
    from (
      select stage, status, seconds,
        width_bucket(seconds, $1::float8[]) - (seconds = any($1::float8[]))::int as bucket
      from (
        select stage, status, greatest(date_part('epoch', finished_at - started_at), 0) as seconds
        from pipeline_run_stages
        where finished_at is not null
      ) d
    ) s
    group by 1, 2, 3
  ) t) as stage_durations,
  (select coalesce(json_agg(t), '[]'::json) from (
    select pipeline, kind, status, count(*)::int as count from pipeline_triggers group by 1, 2, 3
  ) t) as trigger_events,
  (select coalesce(json_agg(t), '[]'::json) from (
    select deployment, breached, count(*)::int as count from monitoring_windows group by 1, 2
  ) t) as monitoring_windows,
  (select coalesce(json_agg(t), '[]'::json) from (
    select deployment, kind, status, count(*)::int as count from monitoring_actions group by 1, 2, 3
  ) t) as monitoring_actions
`;

interface StatsRow {
  runs: RunCount[];
  stage_durations: StageDurationCount[];
  trigger_events: TriggerEventCount[];
  monitoring_windows: MonitoringWindowCount[];
  monitoring_actions: MonitoringActionCount[];
}

/**
 * Reads every aggregate in one statement. Cost: one grouped scan of each table (runs, finished stages, trigger
 * events, monitoring windows and actions), growing with their rows: about 120 ms for 20,000 runs and 200,000
 * finished stages on a laptop-class machine, so callers cache it (server/platform-metrics.ts: 5 s).
 *
 * @param stageBounds Ascending upper bounds, in seconds, that stage durations are counted against.
 */
export async function readPlatformStats(pool: StatsQueryable, stageBounds: readonly number[]): Promise<PlatformStats> {
  const { rows } = await pool.query(PLATFORM_STATS_SQL, [stageBounds]);
  const row = rows[0] as StatsRow | undefined;
  if (!row) return EMPTY_PLATFORM_STATS;
  return {
    runs: row.runs,
    stageDurations: row.stage_durations,
    triggerEvents: row.trigger_events,
    monitoringWindows: row.monitoring_windows,
    monitoringActions: row.monitoring_actions,
  };
}
