import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runAgentDemo } from '../../demo/agent.ts';

// `npm run demo:agent` as a test: what it prints is what happened (demo/agent.ts).

test('the agent demo trades with an approved model only, refuses the revoked certificate everywhere, and its bundle verifies offline', async () => {
  const lines: string[] = [];
  const outcome = await runAgentDemo((line) => lines.push(line));
  assert.equal(outcome.firstOrder.status, 201, lines.join('\n'));
  assert.equal(outcome.firstOrder.modelVersion, '1.0.0');
  assert.ok(outcome.firstOrder.evidenceId);
  assert.ok(outcome.firstOrder.timestamped);
  assert.equal(outcome.retrainedBeforeApproval, 400);
  assert.equal(outcome.revokedAtToken, 401);
  assert.equal(outcome.revokedAtBroker, 401);
  assert.deepEqual(outcome.secondOrder, { status: 201, modelVersion: '2.0.0' });
  assert.ok(outcome.bundleVerified, outcome.bundleLines.join('\n'));
  assert.ok(lines.some((l) => /2.0.0 of agent algo-7 is pending: it has no trading authority/.test(l)), 'the retrained model is refused for want of approval');
});
