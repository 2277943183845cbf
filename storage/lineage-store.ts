/**
 * Lineage as one graph across the stores: ML Metadata's artifacts and executions (linked by events), the pipeline
 * runs the executions belong to (by workflow id), the model versions registered from a Model artifact and trained by
 * a run, and the deployments that serve those versions. Read-only: one SQL statement per graph walks it in
 * Postgres, each step an indexed lookup per node, so a query reads what it reaches and never the whole store.
 */
import { and, asc, eq } from 'drizzle-orm';
import { artifacts, events, executions, pipelineRuns, type Artifact, type EventType } from '../schema/index.js';
import type { Database } from './database.js';
import { graphStatement, toNode, type GraphRow } from './lineage-walk.js';

export const LINEAGE_NODE_KINDS = ['artifact', 'execution', 'run', 'model_version', 'deployment'] as const;
export type LineageNodeKind = (typeof LINEAGE_NODE_KINDS)[number];

/**
 * Edges point the way data flows. `input`: an artifact an execution read; `output`: one it wrote; `in_run`: an
 * execution of a pipeline run; `trained`: a run that registered a version; `registered_as`: the Model artifact of a
 * version; `serves`: a version a deployment serves now; `served`: one it served before.
 */
export const LINEAGE_EDGE_KINDS = [
  'input',
  'output',
  'in_run',
  'trained',
  'registered_as',
  'serves',
  'served',
] as const;
export type LineageEdgeKind = (typeof LINEAGE_EDGE_KINDS)[number];

export const LINEAGE_DIRECTIONS = ['upstream', 'downstream'] as const;
export type LineageDirection = (typeof LINEAGE_DIRECTIONS)[number];

export interface LineageNodeRef {
  readonly kind: LineageNodeKind;
  readonly id: string;
}

/** Where a walk starts: a node by id, or a deployment by its name. */
export type LineageAnchor = LineageNodeRef | { readonly kind: 'deployment'; readonly name: string };

export interface LineageEdge {
  readonly from: LineageNodeRef;
  readonly to: LineageNodeRef;
  readonly kind: LineageEdgeKind;
  /** The event's role on the execution (`examples`, `model`), or the deployment role (`champion`, `shadow`, ...). */
  readonly role: string | null;
  /** For `serves` and `served`: the revision's share of traffic. */
  readonly trafficPercent: number | null;
}

/** An execution with the pipeline run it belongs to (null outside a pipeline run: ingestion, batch scoring). */
export interface LineageExecution {
  readonly id: string;
  readonly type: string;
  readonly name: string | null;
  readonly stage: string | null;
  readonly state: string;
  readonly workflowId: string | null;
  readonly runId: string | null;
  readonly startedAt: Date;
  readonly finishedAt: Date | null;
}

/** A node with what it is, and `depth`: the fewest edges between it and the anchor. */
export type LineageNode = { readonly id: string; readonly depth: number } & (
  | {
      readonly kind: 'artifact';
      readonly type: string;
      readonly uri: string;
      readonly sha256: string | null;
      readonly state: string;
      /** What the stage called the object (`snapshot.parquet`): its `kind` property. */
      readonly objectKind: string | null;
      readonly createdAt: Date;
    }
  | ({ readonly kind: 'execution' } & Omit<LineageExecution, 'id'>)
  | {
      readonly kind: 'run';
      readonly pipeline: string;
      readonly pipelineVersion: number;
      readonly workflowId: string;
      readonly trigger: string;
      readonly status: string;
      readonly outcome: string | null;
      readonly startedAt: Date;
      readonly finishedAt: Date | null;
    }
  | {
      readonly kind: 'model_version';
      readonly model: string;
      readonly version: number;
      readonly status: string;
      readonly sha256: string;
      readonly createdAt: Date;
    }
  | {
      readonly kind: 'deployment';
      readonly name: string;
      readonly model: string;
      readonly strategy: string;
      readonly createdAt: Date;
    }
);

export interface LineageQuery {
  readonly anchor: LineageAnchor;
  /** `upstream`: what the anchor came from; `downstream`: what came from it. */
  readonly direction: LineageDirection;
  /** The most edges between the anchor and a node of the answer (at least 1). */
  readonly depth: number;
  /** The most nodes of the answer, the anchor included; past it the answer is `truncated`. */
  readonly maxNodes: number;
}

export interface LineageGraph {
  readonly anchor: LineageNodeRef;
  readonly direction: LineageDirection;
  readonly depth: number;
  /** Whether nodes were left out to keep to `maxNodes` (edges to them are left out too). */
  readonly truncated: boolean;
  /** By depth, then kind and id; the anchor first. */
  readonly nodes: readonly LineageNode[];
  readonly edges: readonly LineageEdge[];
}

/** One execution that wrote or read an artifact, with the event's role. */
export interface ArtifactEvent {
  readonly role: string;
  readonly execution: LineageExecution;
}

export interface ArtifactDetails {
  readonly artifact: Artifact;
  /** The executions that wrote it, oldest first (a content-addressed object can be written by several). */
  readonly producedBy: readonly ArtifactEvent[];
  /** The executions that read it, oldest first. */
  readonly consumedBy: readonly ArtifactEvent[];
  /** Whether either list was cut at `limit`. */
  readonly truncated: boolean;
}

/** Lineage reads over the metadata, registry, pipeline and deployment tables. */
export interface LineageStore {
  /**
   * The graph around an anchor: every node within `depth` edges of it in `direction`, each once (at its fewest
   * edges), and the edges between them, cut at `maxNodes` nodes. Read-only; cycles end because a node is walked
   * once. A run's lineage is its executions' too: its own outputs are downstream of it. Upstream of a deployment is
   * what it serves now (its earlier versions are edges downstream of those versions). Undefined when the anchor does
   * not exist.
   *
   * @example
   * // What produced the version serving now, and which runs and models used this snapshot?
   * await store.graph({ anchor: { kind: 'deployment', name: 'flights' }, direction: 'upstream', depth: 10, maxNodes: 5000 });
   * await store.graph({ anchor: { kind: 'artifact', id: snapshotId }, direction: 'downstream', depth: 10, maxNodes: 5000 });
   */
  graph(query: LineageQuery): Promise<LineageGraph | undefined>;
  /**
   * One artifact with the executions that wrote and read it, each list oldest first and at most `limit` long.
   * Undefined when there is none.
   */
  artifact(id: string, limit: number): Promise<ArtifactDetails | undefined>;
}

/** The LineageStore on Postgres. Holds nothing but the database. */
export class DrizzleLineageStore implements LineageStore {
  constructor(private readonly db: Database) {}

  async graph(query: LineageQuery): Promise<LineageGraph | undefined> {
    const { rows } = await this.db.execute<GraphRow>(graphStatement(query));
    const row = rows[0]!;
    const nodes = row.nodes.flatMap((n) => toNode(n) ?? []);
    const anchor = nodes[0];
    if (anchor?.depth !== 0) return undefined;
    return {
      anchor: { kind: anchor.kind, id: anchor.id },
      direction: query.direction,
      depth: query.depth,
      truncated: row.found > query.maxNodes,
      nodes,
      edges: row.edges.map((edge) => ({
        from: { kind: edge.fromKind, id: edge.fromId },
        to: { kind: edge.toKind, id: edge.toId },
        kind: edge.kind,
        role: edge.role,
        trafficPercent: edge.trafficPercent,
      })),
    };
  }

  async artifact(id: string, limit: number): Promise<ArtifactDetails | undefined> {
    const [artifact] = await this.db.select().from(artifacts).where(eq(artifacts.id, id));
    if (!artifact) return undefined;
    const eventsOf = (type: EventType) =>
      this.db
        .select({
          role: events.role,
          id: executions.id,
          type: executions.type,
          name: executions.name,
          stage: executions.stage,
          state: executions.state,
          workflowId: executions.workflowId,
          runId: pipelineRuns.id,
          startedAt: executions.startedAt,
          finishedAt: executions.finishedAt,
        })
        .from(events)
        .innerJoin(executions, eq(executions.id, events.executionId))
        .leftJoin(pipelineRuns, eq(pipelineRuns.workflowId, executions.workflowId))
        .where(and(eq(events.artifactId, id), eq(events.type, type)))
        .orderBy(asc(executions.startedAt), asc(executions.id))
        .limit(limit + 1);
    const [written, read] = await Promise.all([eventsOf('output'), eventsOf('input')]);
    const toEvent = ({ role, ...execution }: (typeof written)[number]): ArtifactEvent => ({ role, execution });
    return {
      artifact,
      producedBy: written.slice(0, limit).map(toEvent),
      consumedBy: read.slice(0, limit).map(toEvent),
      truncated: written.length > limit || read.length > limit,
    };
  }
}
