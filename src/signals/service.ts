import { expireActivations } from '../approvals/break-glass/activations.ts';
import { expireApprovalRequests } from '../approvals/requests.ts';
import type { Context } from '../context.ts';
import { evaluateClosedWindows, pruneActivity } from '../risk/anomalies/evaluate.ts';
import { deliverAlerts, type DeliveryOptions } from './delivery.ts';
import { expireKycRecords } from '../risk/kyc/expiry.ts';
import { rescreenOnListChange } from '../risk/screening/screen.ts';
import { checkPartnerDrift } from '../federation/drift/check.ts';
import { raiseLapsesInFlight } from '../mandates/lapses.ts';
import { flushRefusalSummaries } from '../audit/refusals.ts';
import type { JsonFetcher } from '../federation/fetch.ts';
import { warnExpiringClientCredentials } from '../clients/expiry.ts';

/**
 * The periodic work behind alerts, started with the server (src/server.ts, the primary process of
 * each node; cluster workers serve HTTP only) and stopped before the database closes: every
 * `intervalMs`, break-glass activations whose time ran out are ended (their alert and review
 * raised), requests a second person approves that expired unanswered are marked expired
 * (`approval.expired`), the risk windows that closed are evaluated against the principals'
 * baselines (src/risk/anomalies/evaluate.ts: anomalies raised, their alerts written) and old
 * activity counts pruned, KYC records past their review date are written `expired`
 * (`kyc.expired`, src/risk/kyc/expiry.ts), the screening list file is loaded again when it changed
 * and everyone screened against a new version (src/risk/screening/screen.ts), the partners whose
 * drift check is due are checked against their live keys and metadata (src/federation/drift:
 * `partner.drifted`, `partner.unreachable`, `partner.suspended` and their alerts), the counts of
 * refusals held back in windows that are over are written (`audit.refusals_suppressed`,
 * src/audit/refusals.ts), the mandates that lapsed with trades in flight are raised (src/mandates/lapses.ts: `mandate.lapsed_in_flight`
 * and its alert), then the alert outbox is delivered (./delivery.ts). All are safe on any number of nodes at once — each ending,
 * window evaluation, expiry, re-screening, partner check, lapse and delivery is taken by one conditional update or insert — so
 * nothing needs a leader. A failing step is logged and the next pass tries again.
 */
export interface SignalService {
  /** Runs one pass now (after the one running, if any). */
  runOnce(): Promise<void>;
  /** Stops the timer and waits for a pass in progress. */
  stop(): Promise<void>;
}

export function startSignalService(ctx: Context, options: { intervalMs?: number; delivery?: DeliveryOptions; /** How partner metadata and keys are fetched (default: SSRF-safe fetchJson). */ partnerFetch?: JsonFetcher } = {}): SignalService {
  const intervalMs = options.intervalMs ?? 5000;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();

  const pass = async () => {
    try {
      await expireActivations(ctx);
    } catch (error) {
      ctx.log.error({ err: error }, 'ending expired break-glass activations failed; retrying next pass');
    }
    try {
      await expireApprovalRequests(ctx);
    } catch (error) {
      ctx.log.error({ err: error }, 'marking expired approval requests failed; retrying next pass');
    }
    try {
      await evaluateClosedWindows(ctx);
      await pruneActivity(ctx.storage.db, ctx.clock.now());
    } catch (error) {
      ctx.log.error({ err: error }, 'evaluating risk windows failed; retrying next pass');
    }
    try {
      await expireKycRecords(ctx);
    } catch (error) {
      ctx.log.error({ err: error }, 'expiring KYC records past their review date failed; retrying next pass');
    }
    try {
      await rescreenOnListChange(ctx);
    } catch (error) {
      // A changed list that does not load leaves the one loaded before in force.
      ctx.log.error({ err: error }, 'screening list reload or re-screening failed; the list loaded before stays in force; retrying next pass');
    }
    try {
      // Each partner's check catches its own failure (an unreachable partner is an observation, not an error).
      await checkPartnerDrift(ctx, options.partnerFetch ? { fetch: options.partnerFetch } : {});
    } catch (error) {
      ctx.log.error({ err: error }, 'partner drift checks failed; retrying next pass');
    }
    try {
      await flushRefusalSummaries(ctx);
    } catch (error) {
      ctx.log.error({ err: error }, 'writing refusal summaries failed; retrying next pass');
    }
    try {
      await raiseLapsesInFlight(ctx);
    } catch (error) {
      ctx.log.error({ err: error }, 'raising mandate lapses in flight failed; retrying next pass');
    }
    try {
      // Client secrets and registered certificates near their expiry: client.*_expiring, once per threshold (src/clients/expiry.ts).
      await warnExpiringClientCredentials(ctx);
    } catch (error) {
      ctx.log.error({ err: error }, 'warning of expiring client credentials failed; retrying next pass');
    }
    try {
      await deliverAlerts(ctx, options.delivery);
    } catch (error) {
      ctx.log.error({ err: error }, 'alert delivery pass failed; retrying next pass');
    }
  };
  const runOnce = () => (running = running.then(pass));
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => void runOnce().finally(schedule), intervalMs);
    timer.unref();
  };
  schedule();
  return {
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
