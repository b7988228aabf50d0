/** The simulation's CloudWatch alarm evaluation (moto never evaluates alarms). */
import { describe, expect, it } from 'vitest';
import { parseEvent } from '../../lambda/failover/events.ts';
import { alarmName, ALARM_KIND } from '../../lib/contract.ts';
import { type AlarmDefinition, alarmActionEvent, definitionOf, evaluateAlarm, type Sample } from '../../sim/alarm-evaluator.ts';

// The stack's heartbeat alarm: SampleCount < 1 over 10 s periods, 2 of 3 to alarm, missing data breaching.
const HEARTBEAT: AlarmDefinition = { statistic: 'SampleCount', periodSeconds: 10, evaluationPeriods: 3, datapointsToAlarm: 2, threshold: 1, comparison: 'LessThanThreshold', treatMissingData: 'breaching' };
const beats = (from: number, to: number, every = 5000): Sample[] => {
  const out: Sample[] = [];
  for (let t = from; t < to; t += every) out.push({ at: t, value: 1 });
  return out;
};

describe('heartbeat alarm evaluation', () => {
  const t0 = 1_800_000_000_000;
  it('is OK while the agent beats every 5 s', () => {
    expect(evaluateAlarm(HEARTBEAT, beats(t0, t0 + 60_000), t0 + 60_000)).toBe('OK');
  });

  it('goes to ALARM once two whole periods pass without a beat, not after one', () => {
    const samples = beats(t0, t0 + 30_000);
    expect(evaluateAlarm(HEARTBEAT, samples, t0 + 40_000)).toBe('OK');
    expect(evaluateAlarm(HEARTBEAT, samples, t0 + 49_999)).toBe('OK');
    expect(evaluateAlarm(HEARTBEAT, samples, t0 + 50_000)).toBe('ALARM');
  });

  it('counts the missing periods as the definition says', () => {
    expect(evaluateAlarm({ ...HEARTBEAT, treatMissingData: 'notBreaching' }, [], t0)).toBe('OK');
    expect(evaluateAlarm({ ...HEARTBEAT, treatMissingData: 'missing' }, [], t0)).toBe('INSUFFICIENT_DATA');
    expect(evaluateAlarm(HEARTBEAT, [], t0)).toBe('ALARM');
  });

  it('evaluates the stack’s status-check alarm (Maximum ≥ 1 over 60 s, 2 of 2, missing breaching) over EC2’s 0/1 metric', () => {
    const STATUS: AlarmDefinition = { statistic: 'Maximum', periodSeconds: 60, evaluationPeriods: 2, datapointsToAlarm: 2, threshold: 1, comparison: 'GreaterThanOrEqualToThreshold', treatMissingData: 'breaching' };
    const ok = [0, 60_000].map((d) => ({ at: t0 + d, value: 0 }));
    expect(evaluateAlarm(STATUS, ok, t0 + 120_000)).toBe('OK');
    expect(evaluateAlarm(STATUS, [{ at: t0, value: 1 }, { at: t0 + 60_000, value: 1 }], t0 + 120_000)).toBe('ALARM');
    expect(evaluateAlarm(STATUS, [{ at: t0, value: 1 }, { at: t0 + 60_000, value: 0 }], t0 + 120_000)).toBe('OK');
    // A stopped instance has no status checks: missing data breaches.
    expect(evaluateAlarm(STATUS, [], t0 + 120_000)).toBe('ALARM');
  });

  it('does not evaluate periods from before the alarm existed', () => {
    expect(evaluateAlarm(HEARTBEAT, [], t0 + 15_000, t0)).toBe('INSUFFICIENT_DATA');
    expect(evaluateAlarm(HEARTBEAT, [], t0 + 30_000, t0)).toBe('ALARM');
  });

  it('reads the definition moto stores and refuses statistics it cannot evaluate', () => {
    expect(definitionOf({ AlarmName: 'a', Statistic: 'SampleCount', Period: 10, EvaluationPeriods: 3, DatapointsToAlarm: 2, Threshold: 1, ComparisonOperator: 'LessThanThreshold', TreatMissingData: 'breaching' })).toEqual(HEARTBEAT);
    expect(() => definitionOf({ AlarmName: 'a', ExtendedStatistic: 'p99', Period: 10, EvaluationPeriods: 3, Threshold: 1, ComparisonOperator: 'LessThanThreshold' })).toThrow(/p99 is not evaluated/);
  });

  it('delivers the event CloudWatch sends a Lambda alarm action, which the failover function accepts', () => {
    const name = alarmName('loxiha-sim', 0, ALARM_KIND.heartbeat);
    const event = alarmActionEvent({ AlarmName: name, AlarmArn: `arn:aws:cloudwatch:us-east-1:123456789012:alarm:${name}`, Namespace: 'Loxiha', MetricName: 'AgentHeartbeat', Statistic: 'SampleCount', Period: 10 }, 'ALARM', 'OK', 'gone', t0);
    const parsed = parseEvent(event, 'loxiha-sim', 'operator');
    expect(parsed.command).toMatchObject({ kind: 'alarm', alarmName: name, instanceIndex: 0, state: 'ALARM', via: 'direct' });
  });
});
