import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { parseBasicAuthorization } from '../../../src/clients/authentication/client-secret.ts';
import { OAuthError } from '../../../src/oauth-error.ts';
import { basic, harness, rejectsWith, type Harness } from './fixture.ts';

const challenge = 'Basic realm="clearance"';

async function setup(t: TestContext, method: 'client_secret_basic' | 'client_secret_post' = 'client_secret_basic'): Promise<{ h: Harness; secret: string }> {
  const h = await harness(t);
  const secret = await h.register({ client_id: 'risk-service', token_endpoint_auth_method: method });
  return { h, secret: secret! };
}

describe('client_secret_basic', () => {
  test('authenticates a client with its id and secret in the Basic header', async (t) => {
    const { h, secret } = await setup(t);
    const result = await h.authenticate({ authorization: basic('risk-service', secret) });
    assert.equal(result.client.metadata.client_id, 'risk-service');
    assert.equal(result.method, 'client_secret_basic');
  });

  test('accepts the matching client_id in the body as well', async (t) => {
    const { h, secret } = await setup(t);
    const result = await h.authenticate({ authorization: basic('risk-service', secret), body: { client_id: 'risk-service' } });
    assert.equal(result.method, 'client_secret_basic');
  });

  test('accepts the scheme name in any letter case', async (t) => {
    const { h, secret } = await setup(t);
    const header = basic('risk-service', secret).replace('Basic', 'bAsIc');
    assert.equal((await h.authenticate({ authorization: header })).method, 'client_secret_basic');
  });

  test('rejects a wrong secret with a Basic challenge', async (t) => {
    const { h } = await setup(t);
    const error = await rejectsWith(h.authenticate({ authorization: basic('risk-service', 'not-the-secret') }), {
      detail: /wrong secret for risk-service/,
      description: /^client authentication failed$/,
    });
    assert.equal(error.headers['www-authenticate'], challenge);
  });

  test('rejects an unknown client with the same public description as a wrong secret', async (t) => {
    const { h } = await setup(t);
    const error = await rejectsWith(h.authenticate({ authorization: basic('ghost', 'whatever') }), {
      detail: /unknown client "ghost"/,
      description: /^client authentication failed$/,
    });
    assert.equal(error.headers['www-authenticate'], challenge);
  });

  test('rejects a header without a colon', async (t) => {
    const { h } = await setup(t);
    const error = await rejectsWith(h.authenticate({ authorization: `Basic ${Buffer.from('risk-service').toString('base64')}` }), {
      detail: /no ":" separator/,
    });
    assert.equal(error.headers['www-authenticate'], challenge);
  });

  test('rejects a header that is not base64', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ authorization: 'Basic ***' }), { detail: /malformed Basic credentials/ });
    await rejectsWith(h.authenticate({ authorization: 'Basic abc' }), { detail: /not padded base64/ });
    await rejectsWith(h.authenticate({ authorization: 'Basic' }), { detail: /malformed Basic credentials/ });
  });

  test('rejects credentials that are not UTF-8', async (t) => {
    const { h } = await setup(t);
    const header = `Basic ${Buffer.from([0x72, 0x3a, 0xff, 0xfe]).toString('base64')}`;
    await rejectsWith(h.authenticate({ authorization: header }), { detail: /not UTF-8/ });
  });

  test('rejects credentials with a broken percent-encoding', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ authorization: `Basic ${Buffer.from('risk-service:%E0%A4%A').toString('base64')}` }), {
      detail: /not valid form-urlencoding/,
    });
  });

  test('rejects an empty client_id or an empty secret', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ authorization: `Basic ${Buffer.from(':secret').toString('base64')}` }), { detail: /empty client_id/ });
    await rejectsWith(h.authenticate({ authorization: `Basic ${Buffer.from('risk-service:').toString('base64')}` }), { detail: /empty secret/ });
  });

  test('rejects another Authorization scheme', async (t) => {
    const { h } = await setup(t);
    const error = await rejectsWith(h.authenticate({ authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln' }), {
      detail: /unsupported Authorization scheme "Bearer"/,
    });
    assert.equal(error.headers['www-authenticate'], challenge);
  });

  test('rejects an overlong secret without hashing it', async (t) => {
    const { h } = await setup(t);
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', 's'.repeat(600)) }), { detail: /longer than 512/ });
  });

  test('rejects the secret of one client presented with the id of another', async (t) => {
    const { h, secret } = await setup(t);
    await h.register({ client_id: 'ops-service', token_endpoint_auth_method: 'client_secret_basic' });
    await rejectsWith(h.authenticate({ authorization: basic('ops-service', secret) }), { detail: /wrong secret for ops-service/ });
  });
});

describe('parseBasicAuthorization', () => {
  test('form-decodes the client_id and the secret before use (RFC 6749 §2.3.1)', () => {
    const header = `Basic ${Buffer.from('desk%3Aone+a:p%40ss+w%2Bord%3A%25').toString('base64')}`;
    assert.deepEqual(parseBasicAuthorization(header), { clientId: 'desk:one a', secret: 'p@ss w+ord:%' });
  });

  test('splits at the first colon, so a raw colon may stay in the secret', () => {
    const header = `Basic ${Buffer.from('risk-service:a:b').toString('base64')}`;
    assert.deepEqual(parseBasicAuthorization(header), { clientId: 'risk-service', secret: 'a:b' });
  });

  test('round-trips what a client encoding per RFC 6749 sends', () => {
    const header = basic('svc.desk:eu', 'sp ce+plus%');
    assert.deepEqual(parseBasicAuthorization(header), { clientId: 'svc.desk:eu', secret: 'sp ce+plus%' });
  });

  test('throws invalid_client, never another error, on garbage', () => {
    for (const header of ['', 'Basic', 'Basic ====', 'Basic a=b=', 'Digest x', 'Basic Zm9v Zm9v', `Basic ${'A'.repeat(4)}`]) {
      assert.throws(() => parseBasicAuthorization(header), (e) => e instanceof OAuthError && e.error === 'invalid_client', header);
    }
  });
});

describe('client_secret_post', () => {
  test('authenticates a client with client_id and client_secret in the body', async (t) => {
    const { h, secret } = await setup(t, 'client_secret_post');
    const result = await h.authenticate({ body: { client_id: 'risk-service', client_secret: secret } });
    assert.equal(result.method, 'client_secret_post');
  });

  test('rejects a wrong secret without a Basic challenge', async (t) => {
    const { h } = await setup(t, 'client_secret_post');
    const error = await rejectsWith(h.authenticate({ body: { client_id: 'risk-service', client_secret: 'nope' } }), {
      detail: /wrong secret/,
    });
    assert.equal(error.headers['www-authenticate'], undefined);
  });

  test('rejects client_secret without client_id', async (t) => {
    const { h, secret } = await setup(t, 'client_secret_post');
    await rejectsWith(h.authenticate({ body: { client_secret: secret } }), { detail: /client_secret without client_id/ });
  });

  test('rejects a client registered for client_secret_basic sending its secret in the body', async (t) => {
    const { h, secret } = await setup(t, 'client_secret_basic');
    await rejectsWith(h.authenticate({ body: { client_id: 'risk-service', client_secret: secret } }), {
      detail: /used client_secret_post but is registered for client_secret_basic/,
    });
  });

  test('rejects a client registered for client_secret_post sending its secret in the header', async (t) => {
    const { h, secret } = await setup(t, 'client_secret_post');
    await rejectsWith(h.authenticate({ authorization: basic('risk-service', secret) }), {
      detail: /used client_secret_basic but is registered for client_secret_post/,
    });
  });
});
