import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { approvedBeforeCutOff } from '../../src/approvals/standing.ts';

describe('an approval and its approver’s cut-off', () => {
  const active = { status: 'active' as const, lock_reason: null };

  test('stands when the approver was never cut off, or was cut off before approving', () => {
    assert.equal(approvedBeforeCutOff({ ...active, tokens_valid_after: null }, { at: 1_000 }), false);
    assert.equal(approvedBeforeCutOff({ ...active, tokens_valid_after: 999 }, { at: 1_000 }), false);
  });

  test('no longer stands when the approver was cut off after approving, or in the same millisecond', () => {
    assert.equal(approvedBeforeCutOff({ ...active, tokens_valid_after: 1_001 }, { at: 1_000 }), true);
    assert.equal(approvedBeforeCutOff({ ...active, tokens_valid_after: 1_000 }, { at: 1_000 }), true);
  });
});
