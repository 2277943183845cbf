/**
 * Names a definition implies when it does not spell them out. Imports types only: workflow code uses these, and the
 * workflow bundle must not pull in zod schemas, DuckDB or the trainers.
 */
import type { PipelineDefinition } from './definition.js';

export function datasetOf(definition: PipelineDefinition): string {
  return definition.dataset ?? definition.name;
}

export function modelNameOf(definition: PipelineDefinition): string {
  return definition.model?.name ?? definition.name;
}

export function deploymentNameOf(definition: PipelineDefinition): string {
  return definition.deployment.name ?? modelNameOf(definition);
}
