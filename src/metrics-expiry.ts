import { Gauge, type Registry } from 'prom-client';
import type { Context } from './context.ts';

const week = 7 * 86400_000;

/**
 * What expires soon, at scrape time (docs/operations.md "Metrics"): the private CA's valid
 * certificates per profile (the soonest expiry and how many expire within a week), the mandates in
 * force (likewise), and the signing key in use (how long it has signed). Read from the database,
 * so every node reports the same and a restart loses nothing.
 */
export async function collectExpiryMetrics(ctx: Context, registry: Registry): Promise<void> {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const [certificates, mandates, keys] = await Promise.all([
    db
      .selectFrom('pki_certificates')
      .select((eb) => [
        'profile',
        eb.fn.min<number>('not_after').as('soonest'),
        // Those expiring within the week, in the same pass (not one more query per profile).
        eb.fn.sum<number>(eb.case().when('not_after', '<=', now + week).then(1).else(0).end()).as('within'),
      ])
      .where('status', '=', 'valid')
      .where('not_after', '>', now)
      .groupBy('profile')
      .execute(),
    db
      .selectFrom('mandate_versions')
      .select((eb) => [eb.fn.min<number>('effective_to').as('soonest'), eb.fn.countAll<number>().as('n')])
      .where('status', '=', 'active')
      .where('effective_to', 'is not', null)
      .where('effective_to', '>', now)
      .where('effective_to', '<=', now + week)
      .executeTakeFirst(),
    ctx.keys.list(),
  ]);
  const soonest = new Gauge({ name: 'clearance_certificate_expiry_seconds', help: 'Seconds until the soonest valid certificate of each profile expires.', labelNames: ['profile'], registers: [registry] });
  const expiring = new Gauge({ name: 'clearance_certificates_expiring_7d', help: 'Valid certificates of each profile that expire within 7 days.', labelNames: ['profile'], registers: [registry] });
  for (const row of certificates) {
    soonest.set({ profile: row.profile }, (Number(row.soonest) - now) / 1000);
    expiring.set({ profile: row.profile }, Number(row.within ?? 0));
  }
  new Gauge({ name: 'clearance_mandates_expiring_7d', help: 'Mandate versions in force whose effective period ends within 7 days.', registers: [registry] }).set(Number(mandates?.n ?? 0));
  const mandateSoonest = new Gauge({ name: 'clearance_mandate_expiry_seconds', help: 'Seconds until the soonest end of a mandate in force that ends within 7 days (absent when none does).', registers: [registry] });
  if (mandates?.soonest !== null && mandates?.soonest !== undefined) mandateSoonest.set((Number(mandates.soonest) - now) / 1000);
  const signing = keys.filter((k) => k.state === 'active');
  const keyAge = new Gauge({ name: 'clearance_signing_key_age_seconds', help: 'How long the signing key in use has signed (rotate before your policy’s maximum).', labelNames: ['alg'], registers: [registry] });
  for (const key of signing) keyAge.set({ alg: key.alg }, Math.max(0, (now - key.activatesAt) / 1000));
  new Gauge({ name: 'clearance_signing_keys_next', help: 'Signing keys published and not yet signing (a rotation in its overlap).', registers: [registry] }).set(keys.filter((k) => k.state === 'next').length);
}
