import type { TestContext } from 'node:test';
import type { Context } from '../../src/context.ts';

/**
 * Makes the audit log refuse events of `type` for the rest of the test (the log unreachable for
 * them), every other event recorded as before: what a read that must be on the record answers when
 * it cannot be (`people.reviewed`: server_error, never the data).
 */
export function auditRefuses(t: TestContext, ctx: Pick<Context, 'audit'>, type: string): void {
  const record = ctx.audit.record.bind(ctx.audit);
  ctx.audit.record = async (event) => {
    if (event.type === type) throw new Error('the audit log is unreachable');
    return record(event);
  };
  t.after(() => {
    ctx.audit.record = record;
  });
}
