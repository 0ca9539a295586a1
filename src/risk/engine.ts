/**
 * The risk engine (issue 16, docs/risk.md): at a login, a token issuance (every grant, exchange
 * included), an AuthZEN evaluation or an admin action, the caller describes what is happening
 * (`RiskFacts`), the engine runs every signal that applies to that moment (./signals/index.ts) and
 * scores the ones that fired (./assessment.ts). After the action succeeded, `observeRisk` lets each
 * signal remember what it will need next time (a device, a network, a scope now seen).
 *
 * Protocol-free: no HTTP, no OAuth error. The caller records the assessment in the audit event of
 * its decision (`riskAuditDetail`), passes it to Cedar (`riskContextValue`) and applies the stricter
 * of the risk outcome and the policy decision (`stricterOutcome`). A signal whose store fails makes
 * the assessment fail (the caller's request fails with it): never an assessment that silently
 * skipped a signal.
 *
 * Deterministic and testable: every signal reads time from `ctx.clock` and state from the stores
 * it is given (an injected clock and store in unit tests).
 */
import type { Context } from '../context.ts';
import { quietAssessment, scoreRisk, type RiskAssessment, type RiskMoment, type SignalHit } from './assessment.ts';
import type { RiskSettings, SignalName } from './settings.ts';
import type { SightingNotes } from './sightings.ts';
import { riskSignals } from './signals/index.ts';

/** Whom an assessment is about. `Admin` is an administrator (a person's id or an admin client's). */
export interface RiskPrincipal {
  type: 'User' | 'Client' | 'Admin';
  id: string;
}

/** What the caller knows about the action being assessed. Signals read what they need. */
export interface RiskFacts {
  moment: RiskMoment;
  principal: RiskPrincipal;
  /** The source address of the request (after trusted proxies). */
  address?: string;
  /** The client the action is made through (the token's client; the login's client, if any). */
  clientId?: string;
  /** Login: the id in the person's verified device cookie; undefined when none came (or it did not verify). */
  deviceId?: string;
  /** Issuance: the grant type. */
  grantType?: string;
  /** Issuance and evaluation: the scopes (actions) asked for. */
  scopes?: readonly string[];
  /** Issuance: the token's audience (resource server identifier). */
  audience?: string;
  /** Issuance and evaluation: the resources asked for (RFC 8707 resource, an AuthZEN resource, authorization_details locations). */
  resources?: readonly string[];
  /** Token exchange: the subject token's subject. */
  subject?: string;
  /** Token exchange: the new token's act chain, outermost (the new actor) first. */
  actors?: readonly string[];
  /**
   * Issuance: the token presented to get this one (`jti:<jti>` of an exchanged subject token,
   * `refresh:<family>` of a refresh token), and whether its holder presented it (the client it was
   * issued to, so `address` is where the holder is now), for `concurrent_networks`.
   */
  presented?: { token: string; byHolder: boolean };
  /** Issuance, once issued (observe): the new token (`jti:<jti>`), where its holder got it. */
  issued?: string;
  /** Admin: what the action changes (e.g. `PUT /admin/users/{u}`, `apply`, `policy.activate`). */
  action?: string;
  /** Admin, `policy.activate`: when the activated version was created (epoch ms). */
  createdAt?: number;
}

/** What the engine reads. Signals use the Context's stores; unit tests build one with `testContext`. */
export type RiskDeps = Context;

/** A signal that fired: why, and optionally how strongly (0–1, scaling its weight; default 1). */
export interface Fired {
  detail?: string;
  strength?: number;
}

/** One signal: when it applies, whether it fires, and what it remembers after a success. */
export interface RiskSignal {
  name: SignalName;
  moments: readonly RiskMoment[];
  evaluate(deps: RiskDeps, facts: RiskFacts, settings: RiskSettings): Fired | undefined | Promise<Fired | undefined>;
  /**
   * After the action succeeded: remember what the next evaluation needs (a device, a network now
   * seen). Sightings go to `notes`: the store, or the action's own transaction (a sign-in's).
   */
  observe?(deps: RiskDeps, facts: RiskFacts, settings: RiskSettings, notes: SightingNotes): void | Promise<void>;
}

/** Assesses the action with every signal that applies to its moment and has a non-zero weight. */
export async function assessRisk(deps: RiskDeps, facts: RiskFacts, signals: readonly RiskSignal[] = riskSignals): Promise<RiskAssessment> {
  const settings = await deps.risk.settings.get();
  if (!settings.enabled) return quietAssessment;
  const applicable = signals.filter((s) => s.moments.includes(facts.moment) && settings.weights[s.name] > 0);
  const fired = await Promise.all(applicable.map((s) => s.evaluate(deps, facts, settings)));
  const hits: SignalHit[] = [];
  fired.forEach((f, i) => {
    if (!f) return;
    const signal = applicable[i]!;
    const strength = Math.min(1, Math.max(0, f.strength ?? 1));
    const hit: SignalHit = { signal: signal.name, points: Math.round(settings.weights[signal.name] * strength) };
    if (f.detail !== undefined) hit.detail = f.detail;
    hits.push(hit);
  });
  return scoreRisk(hits, settings);
}

/**
 * After the action succeeded: every applicable signal remembers what it saw. Its sightings are
 * written by the store, or noted in `notes` (a sign-in's transaction: `SightingStore.notesFor`).
 */
export async function observeRisk(deps: RiskDeps, facts: RiskFacts, signals: readonly RiskSignal[] = riskSignals, notes: SightingNotes = deps.risk.sightings): Promise<void> {
  const settings = await deps.risk.settings.get();
  if (!settings.enabled) return;
  await Promise.all(signals.filter((s) => s.observe && s.moments.includes(facts.moment)).map((s) => s.observe!(deps, facts, settings, notes)));
}
