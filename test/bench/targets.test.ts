import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { targetsLine } from '../../bench/targets.ts';

describe('the targets line', () => {
  it('sets the floor beside the peer ratio and the CPU per crypto, as their bounds', () => {
    const line = targetsLine([
      { scenario: 'peer', ratio: 1.12, clearance_cpu_to_crypto: 3.68, floor_vs_peer: 1.83, floor_cpu_to_crypto: 2.07 },
    ]);
    assert.equal(line.m2m_vs_oidc_provider, 1.12);
    assert.equal(line.m2m_vs_oidc_provider_met, 'no');
    assert.equal(line.m2m_vs_oidc_provider_bound, 1.83);
    assert.equal(line.m2m_cpu_to_crypto, 3.68);
    assert.equal(line.m2m_cpu_to_crypto_bound, 2.07);
    assert.equal(line.met, '0 of 2');
  });

  it('sets the floor’s p99 at half its peak beside the SQLite server’s', () => {
    const line = targetsLine([
      { scenario: 'm2m-latency', database: 'sqlite', p99_ms: 11.4 },
      { scenario: 'm2m-latency', database: 'none', server: 'floor', p99_ms: 2.5 },
    ]);
    assert.equal(line.m2m_p99_ms_at_half_peak, 11.4);
    assert.equal(line.m2m_p99_ms_at_half_peak_bound, 2.5);
    assert.equal(line.m2m_p99_ms_at_half_peak_met, 'no');
  });

  it('leaves a bound out when the run did not measure the floor', () => {
    const line = targetsLine([{ scenario: 'peer', ratio: 2.6, clearance_cpu_to_crypto: 2.4 }]);
    assert.equal(line.m2m_vs_oidc_provider_met, 'yes');
    assert.equal('m2m_vs_oidc_provider_bound' in line, false);
    assert.equal(line.met, '2 of 2');
  });
});
