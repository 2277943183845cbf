/**
 * The one SQL statement that answers a lineage query (lineage-store.ts): the walk, the edges between the nodes it
 * kept, and each node's row, as JSON. Every step is an indexed lookup per node (events by artifact or execution and
 * type, executions by workflow id, model versions by id, artifact or run, deployment revisions by version or
 * deployment), so its cost follows the size of the answer, not of the store.
 */
import { sql, type SQL } from 'drizzle-orm';
import {
  artifacts,
  deploymentRevisions,
  deployments,
  events,
  executions,
  modelVersions,
  pipelineRuns,
  pipelines,
  pipelineVersions,
  registeredModels,
  type EventType,
} from '../schema/index.js';
import type {
  LineageAnchor,
  LineageDirection,
  LineageEdgeKind,
  LineageNode,
  LineageNodeKind,
  LineageQuery,
} from './lineage-store.js';

const e = events;
const x = executions;
const r = pipelineRuns;
const v = modelVersions;
const d = deploymentRevisions;
const OUTPUT: EventType = 'output';
const INPUT: EventType = 'input';

/**
 * The edges one step upstream of the node `n` (a relation alias with `kind` and `id`), as rows of `far_kind`,
 * `far_id` (the end away from `n`), `from_kind`, `from_id`, `to_kind`, `to_id`, `kind`, `role`, `traffic_percent`.
 * Each branch runs for one kind of node only and is an indexed lookup.
 */
function upstreamSteps(n: SQL): SQL {
  return sql`
    select 'execution' as far_kind, ${e.executionId} as far_id, 'execution' as from_kind, ${e.executionId} as from_id,
      'artifact' as to_kind, ${e.artifactId} as to_id, 'output' as kind, ${e.role} as role,
      null::int as traffic_percent
    from ${e} where ${n}.kind = 'artifact' and ${e.artifactId} = ${n}.id and ${e.type} = ${OUTPUT}
    union all
    select 'artifact', ${e.artifactId}, 'artifact', ${e.artifactId}, 'execution', ${e.executionId}, 'input', ${e.role}, null
    from ${e} where ${n}.kind = 'execution' and ${e.executionId} = ${n}.id and ${e.type} = ${INPUT}
    union all
    select 'execution', ${x.id}, 'execution', ${x.id}, 'run', ${r.id}, 'in_run', null, null
    from ${r} join ${x} on ${x.workflowId} = ${r.workflowId} where ${n}.kind = 'run' and ${r.id} = ${n}.id
    union all
    select 'artifact', ${v.artifactId}, 'artifact', ${v.artifactId}, 'model_version', ${v.id}, 'registered_as', null, null
    from ${v} where ${n}.kind = 'model_version' and ${v.id} = ${n}.id and ${v.artifactId} is not null
    union all
    select 'run', ${v.sourceRunId}, 'run', ${v.sourceRunId}, 'model_version', ${v.id}, 'trained', null, null
    from ${v} where ${n}.kind = 'model_version' and ${v.id} = ${n}.id and ${v.sourceRunId} is not null
    union all
    select 'model_version', ${d.versionId}, 'model_version', ${d.versionId}, 'deployment', ${d.deploymentId}, 'serves',
      ${d.role}, ${d.trafficPercent}
    from ${d} where ${n}.kind = 'deployment' and ${d.deploymentId} = ${n}.id and ${d.endedAt} is null`;
}

/** {@link upstreamSteps}, the other way. A version's revisions in one deployment are one edge: the latest. */
function downstreamSteps(n: SQL): SQL {
  return sql`
    select 'execution' as far_kind, ${e.executionId} as far_id, 'artifact' as from_kind, ${e.artifactId} as from_id,
      'execution' as to_kind, ${e.executionId} as to_id, 'input' as kind, ${e.role} as role,
      null::int as traffic_percent
    from ${e} where ${n}.kind = 'artifact' and ${e.artifactId} = ${n}.id and ${e.type} = ${INPUT}
    union all
    select 'model_version', ${v.id}, 'artifact', ${v.artifactId}, 'model_version', ${v.id}, 'registered_as', null, null
    from ${v} where ${n}.kind = 'artifact' and ${v.artifactId} = ${n}.id
    union all
    select 'artifact', ${e.artifactId}, 'execution', ${e.executionId}, 'artifact', ${e.artifactId}, 'output', ${e.role}, null
    from ${e} where ${n}.kind = 'execution' and ${e.executionId} = ${n}.id and ${e.type} = ${OUTPUT}
    union all
    select 'run', ${r.id}, 'execution', ${x.id}, 'run', ${r.id}, 'in_run', null, null
    from ${x} join ${r} on ${r.workflowId} = ${x.workflowId} where ${n}.kind = 'execution' and ${x.id} = ${n}.id
    union all
    select 'model_version', ${v.id}, 'run', ${v.sourceRunId}, 'model_version', ${v.id}, 'trained', null, null
    from ${v} where ${n}.kind = 'run' and ${v.sourceRunId} = ${n}.id
    union all
    (select distinct on (${d.deploymentId}) 'deployment', ${d.deploymentId}, 'model_version', ${d.versionId},
      'deployment', ${d.deploymentId}, case when ${d.endedAt} is null then 'serves' else 'served' end, ${d.role},
      ${d.trafficPercent}
    from ${d} where ${n}.kind = 'model_version' and ${d.versionId} = ${n}.id
    order by ${d.deploymentId}, ${d.endedAt} is null desc, ${d.startedAt} desc)`;
}

/** The anchor as a one-row relation `(kind, id)`; no row when a deployment name is unknown. */
function anchorRow(anchor: LineageAnchor): SQL {
  if ('name' in anchor) {
    return sql`select 'deployment'::text as kind, ${deployments.id} as id from ${deployments}
      where ${deployments.name} = ${anchor.name}`;
  }
  return sql`select ${anchor.kind}::text as kind, ${anchor.id}::uuid as id`;
}

/**
 * What joins the anchor's first step besides its edges: downstream of a run starts from its executions too (a run's
 * own work is part of it). Otherwise nothing.
 */
function anchorExtras(anchor: LineageAnchor, direction: LineageDirection): SQL {
  if ('name' in anchor || anchor.kind !== 'run' || direction !== 'downstream') {
    return sql`select null::text as kind, null::uuid as id where false`;
  }
  return sql`select 'execution', ${x.id} from ${r} join ${x} on ${x.workflowId} = ${r.workflowId}
    where ${r.id} = ${anchor.id}`;
}

/** Each kept node's row as JSON (null when it was deleted during the walk), by kind: one indexed lookup each. */
const NODE_DETAILS = sql`case k.kind
  when 'artifact' then (
    select json_build_object('type', ${artifacts.type}, 'uri', ${artifacts.uri}, 'sha256', ${artifacts.sha256},
      'state', ${artifacts.state}, 'objectKind', ${artifacts.properties} ->> 'kind', 'createdAt', ${artifacts.createdAt})
    from ${artifacts} where ${artifacts.id} = k.id)
  when 'execution' then (
    select json_build_object('type', ${x.type}, 'name', ${x.name}, 'stage', ${x.stage}, 'state', ${x.state},
      'workflowId', ${x.workflowId}, 'runId', ${r.id}, 'startedAt', ${x.startedAt}, 'finishedAt', ${x.finishedAt})
    from ${x} left join ${r} on ${r.workflowId} = ${x.workflowId} where ${x.id} = k.id)
  when 'run' then (
    select json_build_object('pipeline', ${pipelines.name}, 'pipelineVersion', ${pipelineVersions.version},
      'workflowId', ${r.workflowId}, 'trigger', ${r.trigger}, 'status', ${r.status}, 'outcome', ${r.outcome},
      'startedAt', ${r.startedAt}, 'finishedAt', ${r.finishedAt})
    from ${r} join ${pipelineVersions} on ${pipelineVersions.id} = ${r.pipelineVersionId}
      join ${pipelines} on ${pipelines.id} = ${pipelineVersions.pipelineId}
    where ${r.id} = k.id)
  when 'model_version' then (
    select json_build_object('model', ${registeredModels.name}, 'version', ${v.version}, 'status', ${v.status},
      'sha256', ${v.sha256}, 'createdAt', ${v.createdAt})
    from ${v} join ${registeredModels} on ${registeredModels.id} = ${v.modelId} where ${v.id} = k.id)
  when 'deployment' then (
    select json_build_object('name', ${deployments.name}, 'model', ${registeredModels.name},
      'strategy', ${deployments.strategy}, 'createdAt', ${deployments.createdAt})
    from ${deployments} join ${registeredModels} on ${registeredModels.id} = ${deployments.modelId}
    where ${deployments.id} = k.id)
  end`;

/**
 * The whole answer as one statement, so one round trip whatever the depth. A breadth-first walk: each row of `walk`
 * is one level (its nodes as parallel arrays, and every node seen so far), the next level is the current one's
 * steps less what was seen, so each node is expanded once, at its fewest edges from the anchor, and cycles end. It
 * stops at `depth`, at an empty level, or one level after `maxNodes` nodes were seen (so that "more" is known).
 * Then the nearest `maxNodes` nodes, the edges between them, and each node's row.
 */
export function graphStatement(query: LineageQuery): SQL {
  const steps = query.direction === 'upstream' ? upstreamSteps : downstreamSteps;
  return sql`
    with recursive walk(depth, kinds, ids, seen_kinds, seen_ids) as (
      select 0, array_agg(a.kind), array_agg(a.id), array_agg(a.kind), array_agg(a.id)
      from (${anchorRow(query.anchor)}) a
      union all
      select w.depth + 1, n.kinds, n.ids, w.seen_kinds || n.kinds, w.seen_ids || n.ids
      from walk w cross join lateral (
        select array_agg(next.kind) as kinds, array_agg(next.id) as ids
        from (
          select s.far_kind as kind, s.far_id as id
          from unnest(w.kinds, w.ids) as f(kind, id) cross join lateral (${steps(sql`f`)}) s
          union all
          select * from (${anchorExtras(query.anchor, query.direction)}) extra where w.depth = 0
          except
          select * from unnest(w.seen_kinds, w.seen_ids)
        ) next
      ) n
      where w.depth < ${query.depth} and cardinality(w.seen_ids) <= ${query.maxNodes} and n.ids is not null
    ),
    found as (select u.kind, u.id, w.depth from walk w cross join lateral unnest(w.kinds, w.ids) as u(kind, id)),
    kept as (select * from found order by depth, kind, id limit ${query.maxNodes}),
    -- Materialized, so the far ends are matched against the kept nodes in one hash join rather than once per node.
    steps as materialized (select s.* from kept k cross join lateral (${steps(sql`k`)}) s),
    edges as (
      select distinct s.from_kind, s.from_id, s.to_kind, s.to_id, s.kind, s.role, s.traffic_percent
      from steps s join kept f on f.kind = s.far_kind and f.id = s.far_id
    )
    select
      (select count(*) from found)::int as found,
      (select coalesce(json_agg(json_build_object('kind', k.kind, 'id', k.id, 'depth', k.depth,
        'details', ${NODE_DETAILS}) order by k.depth, k.kind, k.id), '[]') from kept k) as nodes,
      (select coalesce(json_agg(json_build_object('fromKind', from_kind, 'fromId', from_id, 'toKind', to_kind,
        'toId', to_id, 'kind', kind, 'role', role, 'trafficPercent', traffic_percent)
        order by from_kind, from_id, to_kind, to_id, kind, role), '[]') from edges) as edges`;
}

/** The statement's one row. */
export interface GraphRow extends Record<string, unknown> {
  found: number;
  nodes: { kind: LineageNodeKind; id: string; depth: number; details: Record<string, unknown> | null }[];
  edges: {
    fromKind: LineageNodeKind;
    fromId: string;
    toKind: LineageNodeKind;
    toId: string;
    kind: LineageEdgeKind;
    role: string | null;
    trafficPercent: number | null;
  }[];
}

const DATE_FIELDS = ['createdAt', 'startedAt', 'finishedAt'] as const;

/** A node from its JSON row: timestamps back to Dates (JSON has them as ISO text). */
export function toNode(row: GraphRow['nodes'][number]): LineageNode | undefined {
  if (!row.details) return undefined;
  const details: Record<string, unknown> = { ...row.details };
  for (const field of DATE_FIELDS) {
    const value = details[field];
    if (typeof value === 'string') details[field] = new Date(value);
  }
  return { ...details, kind: row.kind, id: row.id, depth: row.depth } as LineageNode;
}
