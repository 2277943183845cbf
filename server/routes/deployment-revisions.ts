/** A deployment revision as the deployment routes answer it: deployments.ts, deployment-rollback.ts. */
import { z } from '@hono/zod-openapi';
import type { RevisionSummary } from '../../storage/deployment-store.js';
import { iso } from './common.js';

export const revisionSchema = z
  .object({
    id: z.string(),
    versionId: z.string(),
    version: z.number().int(),
    role: z.string(),
    trafficPercent: z.number().int(),
    reason: z.string(),
    actor: z.string(),
    startedAt: z.string().openapi({ format: 'date-time' }),
    endedAt: z.string().nullable().openapi({ format: 'date-time' }),
  })
  .openapi('DeploymentRevision');

export function revisionJson(r: RevisionSummary): z.infer<typeof revisionSchema> {
  return {
    id: r.id,
    versionId: r.versionId,
    version: r.version,
    role: r.role,
    trafficPercent: r.trafficPercent,
    reason: r.reason,
    actor: r.actor,
    startedAt: iso(r.startedAt),
    endedAt: iso(r.endedAt),
  };
}
