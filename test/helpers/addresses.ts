import assert from 'node:assert/strict';

/**
 * Source addresses, each given once, from the documentation ranges (RFC 5737: 198.51.100.0/24,
 * then 203.0.113.0/24): for requests that must not share the failed-authentication throttle's
 * per-address counters, so a 429 never stands in for the answer a test is about.
 */
export function addressSequence(): () => string {
  let given = 0;
  return () => {
    given += 1;
    assert.ok(given <= 254 * 2, 'out of test addresses');
    return given <= 254 ? `198.51.100.${given}` : `203.0.113.${given - 254}`;
  };
}
