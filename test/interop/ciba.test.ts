import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test, type TestContext } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import * as oauth from 'oauth4webapi';
import { listPendingApprovalRequests } from '../../src/approvals/requests.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { cibaClients, people, subjectDecides } from '../ciba/fixture.ts';
import { ordersApi, resourceServers } from '../endpoints/fixture.ts';
import { startTestServer } from '../helpers/server.ts';

// oauth4webapi (a client nobody here wrote) drives CIBA against a listening Clearance: its
// backchannel authentication request and grant helpers, over a real port.
const insecure = { [oauth.allowInsecureRequests]: true }; // the test issuer is http on loopback

/** A client's notification endpoint: records each ping (its Authorization header and JSON body), answers 204. */
async function startReceiver(t: Pick<TestContext, 'after'>) {
  const received: { authorization: string | undefined; body: Record<string, unknown> }[] = [];
  const server = createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    request.on('end', () => {
      received.push({ authorization: request.headers.authorization, body: JSON.parse(text) as Record<string, unknown> });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/ciba`, received };
}

async function cibaServer(t: TestContext, notificationEndpoint: string) {
  const server = await startTestServer({ t });
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  await server.apply({ resource_servers: resourceServers, users: people, clients: await cibaClients({ notificationEndpoint, jwk: (await exportJWK(publicKey)) as Record<string, unknown> }) });
  const url = new URL(server.issuer);
  const as = await oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oidc', ...insecure }));
  const ctx = server.running.ctx;
  const trader = (await findUserByUsername(ctx, 'trader'))!;
  const approve = async () => {
    const [request] = await listPendingApprovalRequests(ctx, { subject: trader.id });
    assert.ok(request, 'a pending request');
    await subjectDecides(ctx, request);
    return request;
  };
  return { server, as, ctx, trader, approve };
}

test('oauth4webapi completes a CIBA poll flow: pending, the person approves, tokens, then the auth_req_id is spent', async (t) => {
  const { server, as, trader, approve } = await cibaServer(t, 'http://127.0.0.1:9/unused');
  assert.equal(as.backchannel_authentication_endpoint, `${server.issuer}/bc-authorize`);
  const client: oauth.Client = { client_id: 'desk-ciba', id_token_signed_response_alg: 'ES256' };
  const auth = oauth.ClientSecretBasic(server.secrets['desk-ciba']!);
  const started = await oauth.processBackchannelAuthenticationResponse(
    as,
    client,
    await oauth.backchannelAuthenticationRequest(as, client, auth, new URLSearchParams({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 4711' }), insecure),
  );
  assert.equal(started.interval, 5);
  const poll = () => oauth.backchannelAuthenticationGrantRequest(as, client, auth, started.auth_req_id, insecure);
  await assert.rejects(oauth.processBackchannelAuthenticationGrantResponse(as, client, await poll()), (error: oauth.ResponseBodyError) => error.error === 'authorization_pending');
  const request = await approve();
  const tokens = await oauth.processBackchannelAuthenticationGrantResponse(as, client, await poll());
  const claims = oauth.getValidatedIdTokenClaims(tokens)!;
  assert.equal(claims.sub, trader.id);
  const access = JSON.parse(Buffer.from(tokens.access_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  assert.equal(access.aud, ordersApi);
  assert.equal(access.txn, request.id);
  assert.ok(tokens.refresh_token, 'the client is registered for refresh_token');
  await assert.rejects(oauth.processBackchannelAuthenticationGrantResponse(as, client, await poll()), (error: oauth.ResponseBodyError) => error.error === 'invalid_grant');
});

test('oauth4webapi completes a CIBA ping flow: the client’s endpoint is pinged with its token, then it redeems', async (t) => {
  const receiver = await startReceiver(t);
  const { server, as, approve } = await cibaServer(t, receiver.url);
  const client: oauth.Client = { client_id: 'desk-ping', id_token_signed_response_alg: 'ES256' };
  const auth = oauth.ClientSecretBasic(server.secrets['desk-ping']!);
  const notificationToken = 'n0tification-t0ken.for-desk-ping_8c1f2d9a';
  const started = await oauth.processBackchannelAuthenticationResponse(
    as,
    client,
    await oauth.backchannelAuthenticationRequest(as, client, auth, new URLSearchParams({ scope: 'openid', login_hint: 'trader', client_notification_token: notificationToken }), insecure),
  );
  await approve();
  for (let i = 0; i < 100 && receiver.received.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(receiver.received, [{ authorization: `Bearer ${notificationToken}`, body: { auth_req_id: started.auth_req_id } }]);
  const tokens = await oauth.processBackchannelAuthenticationGrantResponse(as, client, await oauth.backchannelAuthenticationGrantRequest(as, client, auth, started.auth_req_id, insecure));
  assert.ok(tokens.id_token);
  // The ping's outcome is on the record, and neither the auth_req_id nor the token is.
  const rows = await server.running.ctx.storage.db.selectFrom('audit_events').select('event').execute();
  const text = rows.map((r) => r.event).join('\n');
  assert.match(text, /ciba\.notified/);
  assert.ok(!text.includes(started.auth_req_id));
  assert.ok(!text.includes(notificationToken));
});
