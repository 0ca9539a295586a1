import { Counter } from 'prom-client';
import { metricsRegistry } from '../metrics.ts';
import { FlightRefused } from '../storage/flight.ts';

/**
 * Reads ahead that failed (docs/operations.md "Metrics"): a KYC record or a person's desks read in
 * the flight of what names the person (src/risk/read-ahead.ts). Nothing is answered wrong then —
 * the issuance reads what it needs itself — but each costs the round trip the read ahead saves, so
 * a count that grows with traffic is a fault to look into, not noise.
 */
const readAheadFailures = new Counter({
  name: 'clearance_read_ahead_failures_total',
  help: "Reads ahead (a person's KYC record or desks, read with the code or refresh token naming them) that failed; the issuance then read them itself.",
  labelNames: ['read'],
  registers: [metricsRegistry],
});

/** Counts a read ahead's failure, unless its flight's transaction was refused (a used code): nothing was to be read then. */
export function countReadAheadFailure(read: 'kyc' | 'desks', error: unknown): void {
  if (!(error instanceof FlightRefused)) readAheadFailures.inc({ read });
}
