import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PkiRefusal } from '../../src/pki/issuance.ts';
import { requireOwnToken, workloadHolder } from '../../src/pki/holder.ts';

// Whom a certificate asked for at POST /pki/certificates is for (src/pki/holder.ts): the
// authenticated client itself, or the person whose own token it is — never a name a partner or a
// delegation chain put in `sub`.

const refusedAsHolder = (error: unknown) => error instanceof PkiRefusal && error.code === 'holder';

describe('the holder of a workload certificate', () => {
  test('is the client for its own token, and the person for a token they signed in for', () => {
    assert.equal(workloadHolder({ sub: 'ca-bot', client_id: 'ca-bot' }), 'ca-bot');
    assert.equal(workloadHolder({ sub: '5f0e6b1c-0000-4000-8000-000000000001', client_id: 'desk-app', grant_id: 'g-1' }), '5f0e6b1c-0000-4000-8000-000000000001');
  });

  test('is refused for a token whose sub is neither the client nor a person of a consent grant', () => {
    assert.throws(() => workloadHolder({ sub: 'workload-1', client_id: 'ca-bot' }), refusedAsHolder);
  });

  test('is refused for a delegated token (act), whoever its sub names', () => {
    assert.throws(() => workloadHolder({ sub: 'ca-bot', client_id: 'ca-bot', act: { sub: 'ca-bot' } }), refusedAsHolder);
    assert.throws(() => workloadHolder({ sub: 'u-1', client_id: 'desk-app', grant_id: 'g-1', act: { sub: 'desk-app' } }), refusedAsHolder);
  });

  test('is refused for a token of partner origin (origin_iss): its sub is the partner\'s choice', () => {
    assert.throws(() => workloadHolder({ sub: 'workload-1', client_id: 'partner-gateway', origin_iss: 'https://as.partner.example' }), refusedAsHolder);
    assert.throws(() => workloadHolder({ sub: 'partner-gateway', client_id: 'partner-gateway', origin_iss: 'https://as.partner.example' }), refusedAsHolder);
  });

  test('an enrolling service names a device only with its own token', () => {
    assert.doesNotThrow(() => requireOwnToken({ sub: 'mdm', client_id: 'mdm' }));
    assert.throws(() => requireOwnToken({ sub: 'mdm', client_id: 'mdm', act: { sub: 'gateway' } }), refusedAsHolder);
    assert.throws(() => requireOwnToken({ sub: 'x', client_id: 'mdm', origin_iss: 'https://as.partner.example' }), refusedAsHolder);
  });
});
