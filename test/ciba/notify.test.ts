import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { notifyClient, postJsonForStatus } from '../../src/ciba/notify.ts';
import { cibaRequestOf } from '../../src/ciba/store.ts';
import { readClientMetadata } from '../../src/clients/metadata.ts';
import { Validator } from '../../src/validation.ts';
import { cibaFixture } from './fixture.ts';

const pingClient = (endpoint: string) => ({
  client_id: 'desk-ping',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['urn:openid:params:grant-type:ciba'],
  backchannel_token_delivery_mode: 'ping',
  backchannel_client_notification_endpoint: endpoint,
  scope: 'openid',
});

function problems(input: Record<string, unknown>, mode: 'development' | 'production'): string[] {
  const v = new Validator();
  readClientMetadata(v, 'client', input, { mode });
  return v.problems.map((p) => `${p.path}: ${p.message}`);
}

describe('CIBA client metadata', () => {
  test('needs https for the notification endpoint in production, and allows http to loopback only in development', () => {
    assert.deepEqual(problems(pingClient('https://desk.example.com/ciba'), 'production'), []);
    assert.match(problems(pingClient('http://127.0.0.1:9000/ciba'), 'production').join(), /must be https/);
    assert.deepEqual(problems(pingClient('http://127.0.0.1:9000/ciba'), 'development'), []);
    assert.match(problems(pingClient('http://desk.example.com/ciba'), 'development').join(), /must be https/);
  });
  test('asks for a delivery mode with the grant, an endpoint in ping mode, and no CIBA field without the grant', () => {
    const { backchannel_token_delivery_mode: _mode, ...noMode } = pingClient('https://desk.example.com/ciba');
    assert.match(problems(noMode, 'production').join(), /backchannel_token_delivery_mode: is required/);
    const { backchannel_client_notification_endpoint: _endpoint, ...noEndpoint } = pingClient('https://desk.example.com/ciba');
    assert.match(problems(noEndpoint, 'production').join(), /backchannel_client_notification_endpoint: is required in ping mode/);
    assert.match(problems({ ...pingClient('https://desk.example.com/ciba'), backchannel_token_delivery_mode: 'push' }, 'production').join(), /backchannel_token_delivery_mode/);
    assert.match(problems({ ...pingClient('https://desk.example.com/ciba'), backchannel_user_code_parameter: true }, 'production').join(), /must be false/);
    assert.match(problems({ client_id: 'x', grant_types: ['client_credentials'], backchannel_token_delivery_mode: 'poll', scope: 'openid' }, 'production').join(), /applies only to clients registered for/);
  });
});

describe('the CIBA ping', () => {
  test('is never sent to a loopback or private address in production mode, and the refusal is audited', async (t) => {
    const f = await cibaFixture(t, { notificationEndpoint: 'http://127.0.0.1:9/ciba' });
    const response = await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', client_notification_token: 'abcdefghijklmnopqrstuvwxyz012345' }, 'desk-ping');
    assert.equal(response.statusCode, 200, response.body);
    const request = await f.pending();
    const ciba = (await cibaRequestOf(f.ctx.storage.db, request.id))!;
    const production = { ...f.ctx, config: { ...f.ctx.config, mode: 'production' as const } };
    const sent: string[] = [];
    const post = async (url: string, _body: unknown, _headers: Record<string, string>, rules: { allowPrivateNetwork: boolean }) => {
      sent.push(url);
      assert.equal(rules.allowPrivateNetwork, false);
      return postJsonForStatus(url, _body, _headers, rules);
    };
    const outcome = await notifyClient(production, ciba, 'approved', { post, sleep: async () => {} });
    assert.equal(outcome.delivered, false);
    assert.equal(outcome.attempts, 1, 'a refused destination is not tried again');
    if (!outcome.delivered) assert.match(outcome.reason, /not https|private network|loopback/);
    for (const address of ['https://10.0.0.7/ciba', 'https://169.254.169.254/latest', 'https://[::1]/ciba']) {
      const refused = await notifyClient(production, { ...ciba, notificationEndpoint: address }, 'approved', { sleep: async () => {} });
      assert.equal(refused.delivered, false, address);
    }
    const failed = await f.auditEvents('ciba.notification_failed');
    assert.equal(failed.length, 4);
    assert.equal(failed[0]!.txn, request.id);
  });

  test('retries a failing endpoint a few times, then records the failure', async (t) => {
    const f = await cibaFixture(t, { notificationEndpoint: 'http://127.0.0.1:9/ciba' });
    await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', client_notification_token: 'abcdefghijklmnopqrstuvwxyz012345' }, 'desk-ping');
    const ciba = (await cibaRequestOf(f.ctx.storage.db, (await f.pending()).id))!;
    let calls = 0;
    const outcome = await notifyClient(f.ctx, ciba, 'denied', { post: async () => (calls++, 503), sleep: async () => {} });
    assert.deepEqual(outcome, { delivered: false, attempts: 3, reason: 'answered HTTP 503' });
    assert.equal(calls, 3);
    const [event] = await f.auditEvents('ciba.notification_failed');
    assert.equal(event!.details?.outcome, 'denied');
  });

  test('refuses a ping-mode request without a well-formed client_notification_token', async (t) => {
    const f = await cibaFixture(t, { notificationEndpoint: 'http://127.0.0.1:9/ciba' });
    for (const token of [undefined, 'has space', 'x'.repeat(1025)]) {
      const response = await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', ...(token !== undefined ? { client_notification_token: token } : {}) }, 'desk-ping');
      assert.equal(response.statusCode, 400);
      assert.equal((response.json() as { error: string }).error, 'invalid_request');
    }
  });
});
