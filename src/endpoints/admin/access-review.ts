import { adminOperation } from '../../admin/authorize.ts';
import { accessReview } from '../../identity/access-review.ts';
import { recordPeopleRead } from '../../audit/reads.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * GET <issuer>/admin/access-review (admin:read): every person's roles, desks, status and lock,
 * last sign-in, factors and live sessions (src/identity/access-review.ts) — what an access review
 * and the console's People list need, and no more (no name, email or attribute). Each read is
 * recorded as `people.reviewed` with who read it: this is personal data (AMENDMENTS, console).
 */
export const adminAccessReview: Endpoint = {
  register(app, ctx) {
    app.get(
      `${issuerPath(ctx.config.issuer)}/admin/access-review`,
      adminOperation(ctx, 'admin:read', {
        tag: 'users',
        summary: "Every person's roles, desks, status, lock, last sign-in, factors and live sessions, for an access review (each read is audited)",
      }),
      async (request, reply) => {
        const people = await accessReview(ctx, ctx.clock.now());
        // On the record before the answer leaves: a read that cannot be recorded is not answered.
        await recordPeopleRead(ctx, request.admin!, request.id, { people: people.length, via: 'access-review' });
        reply.header('cache-control', 'no-store');
        return { people };
      },
    );
  },
};
