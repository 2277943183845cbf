import { fireTrigger, type TriggerOutcome, type TriggerRequest } from '../pipelines/triggers.js';
import { TriggerStore } from '../storage/trigger-store.js';
import { runnerOf, type ActivityDeps } from './deps.js';

/** The trigger path as an activity: schedules, new-data and monitoring workflows start runs through it. */
export function createTriggerActivities(deps: ActivityDeps) {
  const triggers = TriggerStore.over(deps.pgPool);
  return {
    async fireTrigger(request: TriggerRequest): Promise<TriggerOutcome> {
      const outcome = await fireTrigger(
        {
          triggers,
          runner: runnerOf(deps),
        },
        request,
      );
      deps.logger.info({ ...request, ...outcome }, `trigger ${request.kind} of ${request.pipeline}: ${outcome.status}`);
      return outcome;
    },
  };
}
