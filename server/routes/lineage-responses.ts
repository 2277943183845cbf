/**
 * The JSON shapes of `GET /v1/lineage` and `GET /v1/artifacts/{id}`, and how the lineage store's records become
 * them. A node's `ref` (`kind:id`) is unique in a graph: edges name their ends by it.
 */
import { z } from '@hono/zod-openapi';
import {
  LINEAGE_DIRECTIONS,
  LINEAGE_EDGE_KINDS,
  type ArtifactEvent,
  type LineageEdge,
  type LineageExecution,
  type LineageGraph,
  type LineageNode,
  type LineageNodeRef,
} from '../../storage/lineage-store.js';
import { iso } from './common.js';

const dateTime = z.string().openapi({ format: 'date-time' });
const nullableDateTime = dateTime.nullable();

export const executionSummarySchema = z
  .object({
    id: z.string(),
    type: z.string().openapi({ description: 'The component that ran: ExampleGen, Trainer, ...', example: 'Trainer' }),
    name: z.string().nullable(),
    stage: z.string().nullable(),
    state: z.string().openapi({ example: 'complete' }),
    workflowId: z.string().nullable(),
    runId: z.string().nullable().openapi({ description: 'The pipeline run it belongs to; null outside one.' }),
    startedAt: dateTime,
    finishedAt: nullableDateTime,
  })
  .openapi('LineageExecution');

const nodeBase = {
  ref: z.string().openapi({ description: '`kind:id`, unique in the graph.', example: 'artifact:0f8f…' }),
  id: z.string(),
  depth: z.number().int().openapi({ description: 'The fewest edges between the node and the anchor.' }),
  label: z.string().openapi({ description: 'A short name for people (and the DOT and Mermaid renderings).' }),
};

const artifactNodeSchema = z
  .object({
    ...nodeBase,
    kind: z.literal('artifact'),
    type: z.string(),
    uri: z.string(),
    sha256: z.string().nullable(),
    state: z.string(),
    createdAt: dateTime,
  })
  .openapi('LineageArtifactNode');

const executionNodeSchema = z
  .object({ ...nodeBase, ...executionSummarySchema.shape, kind: z.literal('execution') })
  .openapi('LineageExecutionNode');

const runNodeSchema = z
  .object({
    ...nodeBase,
    kind: z.literal('run'),
    pipeline: z.string(),
    pipelineVersion: z.number().int(),
    workflowId: z.string(),
    trigger: z.string(),
    status: z.string(),
    outcome: z.string().nullable(),
    startedAt: dateTime,
    finishedAt: nullableDateTime,
  })
  .openapi('LineageRunNode');

const modelVersionNodeSchema = z
  .object({
    ...nodeBase,
    kind: z.literal('model_version'),
    model: z.string(),
    version: z.number().int(),
    status: z.string(),
    sha256: z.string(),
    createdAt: dateTime,
  })
  .openapi('LineageModelVersionNode');

const deploymentNodeSchema = z
  .object({
    ...nodeBase,
    kind: z.literal('deployment'),
    name: z.string(),
    model: z.string(),
    strategy: z.string(),
    createdAt: dateTime,
  })
  .openapi('LineageDeploymentNode');

const nodeSchema = z.discriminatedUnion('kind', [
  artifactNodeSchema,
  executionNodeSchema,
  runNodeSchema,
  modelVersionNodeSchema,
  deploymentNodeSchema,
]);
export type LineageNodeJson = z.infer<typeof nodeSchema>;

const edgeSchema = z
  .object({
    from: z.string().openapi({ description: 'The `ref` of the node data flows from.' }),
    to: z.string(),
    kind: z.enum(LINEAGE_EDGE_KINDS).openapi({
      description:
        '`input`: an artifact an execution read; `output`: one it wrote; `in_run`: an execution of a pipeline run; ' +
        '`trained`: the run that registered a version; `registered_as`: the Model artifact of a version; ' +
        '`serves`: a version a deployment serves now; `served`: one it served before.',
    }),
    role: z.string().nullable().openapi({ description: 'The event’s role (`examples`, `model`) or deployment role.' }),
    trafficPercent: z.number().int().nullable(),
  })
  .openapi('LineageEdge');
export type LineageEdgeJson = z.infer<typeof edgeSchema>;

export const lineageGraphSchema = z
  .object({
    anchor: z.string().openapi({ description: 'The `ref` of the node the walk started from.' }),
    direction: z.enum(LINEAGE_DIRECTIONS),
    depth: z.number().int(),
    truncated: z.boolean().openapi({ description: 'Nodes past the node cap were left out, with their edges.' }),
    nodes: z.array(nodeSchema).openapi({ description: 'By depth; the anchor first.' }),
    edges: z.array(edgeSchema),
  })
  .openapi('LineageGraph');
export type LineageGraphJson = z.infer<typeof lineageGraphSchema>;

const eventSchema = z.object({ role: z.string(), execution: executionSummarySchema }).openapi('ArtifactEvent');

export const artifactDetailsSchema = z
  .object({
    id: z.string(),
    type: z.string().openapi({ example: 'Dataset' }),
    uri: z.string().openapi({ example: 's3://mlops/artifacts/sha256/ab/ab12…' }),
    sha256: z.string().nullable(),
    bytes: z.number().int().nullable(),
    contentType: z.string().nullable(),
    properties: z.record(z.string(), z.unknown()),
    state: z.string().openapi({ description: '`pending`, `live`, or `deleted` (the object is gone, lineage stays).' }),
    createdAt: dateTime,
    producedBy: z.array(eventSchema).openapi({ description: 'The executions that wrote it, oldest first.' }),
    consumedBy: z.array(eventSchema).openapi({ description: 'The executions that read it, oldest first.' }),
    truncated: z.boolean().openapi({ description: 'A list was cut at its limit.' }),
    links: z.object({ upstream: z.string(), downstream: z.string() }),
  })
  .openapi('ArtifactDetails');

export const nodeRef = (ref: LineageNodeRef) => `${ref.kind}:${ref.id}`;

export function executionJson(x: LineageExecution): z.infer<typeof executionSummarySchema> {
  return {
    id: x.id,
    type: x.type,
    name: x.name,
    stage: x.stage,
    state: x.state,
    workflowId: x.workflowId,
    runId: x.runId,
    startedAt: iso(x.startedAt),
    finishedAt: iso(x.finishedAt),
  };
}

/** A short name for people: what the node is, and the part of it that tells it from its neighbours. */
function nodeLabel(node: LineageNode): string {
  switch (node.kind) {
    case 'artifact':
      return `${node.type} ${node.objectKind ?? node.sha256?.slice(0, 12) ?? node.id.slice(0, 8)}`;
    case 'execution':
      return `${node.type} ${node.stage ?? node.name ?? ''}`.trim();
    case 'run':
      return `run ${node.pipeline} ${node.id.slice(0, 8)} (${node.status})`;
    case 'model_version':
      return `${node.model} v${node.version} (${node.status})`;
    case 'deployment':
      return `deployment ${node.name}`;
  }
}

function nodeJson(node: LineageNode): LineageNodeJson {
  const base = { ref: nodeRef(node), id: node.id, depth: node.depth, label: nodeLabel(node) };
  switch (node.kind) {
    case 'artifact':
      return {
        ...base,
        kind: 'artifact',
        type: node.type,
        uri: node.uri,
        sha256: node.sha256,
        state: node.state,
        createdAt: iso(node.createdAt),
      };
    case 'execution':
      return { ...base, ...executionJson(node), kind: 'execution' };
    case 'run':
      return {
        ...base,
        kind: 'run',
        pipeline: node.pipeline,
        pipelineVersion: node.pipelineVersion,
        workflowId: node.workflowId,
        trigger: node.trigger,
        status: node.status,
        outcome: node.outcome,
        startedAt: iso(node.startedAt),
        finishedAt: iso(node.finishedAt),
      };
    case 'model_version':
      return {
        ...base,
        kind: 'model_version',
        model: node.model,
        version: node.version,
        status: node.status,
        sha256: node.sha256,
        createdAt: iso(node.createdAt),
      };
    case 'deployment':
      return {
        ...base,
        kind: 'deployment',
        name: node.name,
        model: node.model,
        strategy: node.strategy,
        createdAt: iso(node.createdAt),
      };
  }
}

function edgeJson(edge: LineageEdge): LineageEdgeJson {
  return {
    from: nodeRef(edge.from),
    to: nodeRef(edge.to),
    kind: edge.kind,
    role: edge.role,
    trafficPercent: edge.trafficPercent,
  };
}

export function lineageGraphJson(graph: LineageGraph): LineageGraphJson {
  return {
    anchor: nodeRef(graph.anchor),
    direction: graph.direction,
    depth: graph.depth,
    truncated: graph.truncated,
    nodes: graph.nodes.map(nodeJson),
    edges: graph.edges.map(edgeJson),
  };
}

export function artifactEventJson(event: ArtifactEvent): z.infer<typeof eventSchema> {
  return { role: event.role, execution: executionJson(event.execution) };
}
