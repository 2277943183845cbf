import { fireTrigger, type TriggerOutcome, type TriggerRequest } from '../pipelines/triggers.js';
import { TriggerStore } from '../storage/trigger-store.js';
import { temporalOf, type ActivityDeps } from './deps.js';

/** The trigger path as an activity: schedules, new-data and monitoring workflows start runs through it. */
export function createTriggerActivities(deps: ActivityDeps) {
  const triggers = TriggerStore.over(deps.pgPool);
  return {
    async fireTrigger(request: TriggerRequest): Promise<TriggerOutcome> {
      const temporal = temporalOf(deps);
      const outcome = await fireTrigger(
        {
          triggers,
          runner: {
            client: temporal.client,
            pipelines: deps.pipelines,
            taskQueue: temporal.taskQueue,
            trainingTaskQueue: temporal.trainingTaskQueue,
          },
        },
        request,
      );
      deps.logger.info({ ...request, ...outcome }, `trigger ${request.kind} of ${request.pipeline}: ${outcome.status}`);
      return outcome;
    },
  };
}
