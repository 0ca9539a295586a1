import assert from 'node:assert/strict';
import { test } from 'node:test';
import { adminPersonToken } from '../../admin/admin-person.ts';
import { agentHarness, v1 } from '../../agents/fixture.ts';
import type { ProtocolFixture } from '../fixture.ts';
import { testDialects } from '../../helpers/storage.ts';

// POST /admin/agents/{id}/models (src/endpoints/admin/agents.ts, docs/agents.md "Model versions").

type Harness = Awaited<ReturnType<typeof agentHarness>>;

/** The validator's own admin token (a person's, under their consent grant). */
function validatorToken(h: Harness): Promise<string> {
  const fixture: Pick<ProtocolFixture, 'ctx' | 'clock' | 'issuer'> = { ctx: h.ctx, clock: h.clock, issuer: h.ctx.config.issuer };
  return adminPersonToken(fixture as ProtocolFixture, 'val');
}

function propose(h: Harness, token: string, model: typeof v1) {
  return h.app.inject({
    method: 'POST',
    url: '/admin/agents/algo-7/models',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ version: model.version, model_digest: model.model, image_digest: model.image, validation_ref: 'MRM-2026-114' }),
  });
}

for (const dialect of testDialects()) {
  test(`[${dialect.name}] of two concurrent proposals of the same model version, one is pending and the other answered 409`, async (t) => {
    const h = await agentHarness(t, { dialect });
    const token = await validatorToken(h);
    // The same version twice at once, one of them with another artifact: only one may await approval.
    const responses = await Promise.all([propose(h, token, v1), propose(h, token, { ...v1, model: v1.model.replace(/0$/, '1') })]);
    assert.deepEqual(responses.map((r) => r.statusCode).sort(), [202, 409], responses.map((r) => r.body).join('\n'));
    const conflict = responses.find((r) => r.statusCode === 409)!;
    assert.equal(conflict.json().error, 'invalid_request');
    assert.match(conflict.json().error_description, /version 1\.0\.0 of agent algo-7 is .*already/);
    assert.match(String(conflict.headers['cache-control']), /no-store/);
    const rows = await h.ctx.storage.db.selectFrom('agent_models').select('status').where('agent_id', '=', 'algo-7').where('version', '=', v1.version).execute();
    assert.deepEqual(rows.map((r) => r.status), ['pending']);
    const requests = await h.ctx.storage.db.selectFrom('approval_requests').select('id').where('kind', '=', 'model_approval').execute();
    assert.equal(requests.length, 1, 'the losing proposal left no approval request behind');
  });
}
