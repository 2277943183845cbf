import { describe, expect, it } from 'vitest';
import { createActivities, createTrainingActivities, type ActivityDeps } from '../../activities/index.js';
import { PIPELINE_STAGES, RESUMABLE_RECORDS, STAGE_OF_ACTIVITY, STAGES, recordedResult } from '../../core/stages.js';

describe('the stage table', () => {
  it('names an activity of the right task queue for every stage that has one', () => {
    // The factories only build closures; nothing is called, so no service is needed.
    const deps = { pipelines: {}, logger: {}, scratchDir: '/nonexistent' } as unknown as ActivityDeps;
    const main = Object.keys(createActivities(deps));
    const training = Object.keys(createTrainingActivities(deps));
    for (const stage of PIPELINE_STAGES) {
      const { activity, queue } = STAGES[stage];
      if (queue === 'workflow') expect(activity, stage).toBeUndefined();
      else expect(queue === 'training' ? training : main, stage).toContain(activity);
    }
  });

  it('maps each stage activity back to its one stage name', () => {
    expect(STAGE_OF_ACTIVITY).toMatchObject({
      validateData: 'validate_data',
      trainModel: 'train',
      deployModel: 'deploy',
    });
    expect(Object.values(STAGE_OF_ACTIVITY)).not.toContain('approval');
  });

  it('still finds a result recorded under a former name, so older runs resume and their histories replay', () => {
    expect(RESUMABLE_RECORDS).toEqual(expect.arrayContaining(['validate_data', 'validate']));
    expect(RESUMABLE_RECORDS).not.toContain('deploy');
    const old = { validate: { ok: true } };
    expect(recordedResult(old, 'validate_data')).toEqual({ ok: true });
    expect(recordedResult({ validate_data: 1, validate: 2 }, 'validate_data')).toBe(1);
    expect(recordedResult(old, 'prepare')).toBeUndefined();
  });
});
