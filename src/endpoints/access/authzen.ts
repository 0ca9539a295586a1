import { isTxn } from '../../transactions/txn.ts';
import { assetKey } from '../../transfers/detail.ts';
import { normalisedAccountId } from '../../transfers/caip.ts';
import { stepUpDetails, type Decision } from '../../policy/decide.ts';
import { mandateIdPattern } from '../../mandates/terms.ts';
import type { DecisionContext, DecisionRequest, MandateRequest } from '../../policy/request.ts';
import { join, Validator, type Problem } from '../../validation.ts';

/**
 * The OpenID AuthZEN Authorization API 1.0 request and response shapes (§5 information model,
 * §6 Access Evaluation, §7 Access Evaluations), mapped to Clearance's decision requests. No HTTP.
 *
 * - subject `{ type: "user" | "client" | "agent", id }`: a user by id (the `sub` of their tokens),
 *   a client or agent by client_id. `properties` are accepted and ignored: a subject's attributes
 *   come from Clearance's own records.
 * - action `{ name }`: a scope such as `order:create`.
 * - resource `{ type: "resource_server" | "account" | "instrument", id, properties? }`: an
 *   instrument's `properties` carry its `instrument_class` (required) and `venue`; other resources'
 *   attributes come from Clearance's records.
 * - context: the RequestContext of the policy schema (notional, region, acr, mandate, ...), typed;
 *   `time` is Clearance's clock, never the caller's. An unknown member is an error (400), so a
 *   misspelt attribute can never go unnoticed.
 */

const subjectTypes: Record<string, DecisionRequest['principal']['type']> = { user: 'User', client: 'Client', agent: 'Agent' };
const resourceTypes: Record<string, DecisionRequest['resource']['type']> = { resource_server: 'ResourceServer', account: 'Account', instrument: 'Instrument' };
const scopePattern = /^[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*$/;
const idPattern = /^[^\p{Cc}]{1,512}$/u;
const shortString = { maxLength: 128, pattern: /^[^\p{Cc}]+$/u, patternMessage: 'must not contain control characters' };
/** Largest batch of evaluations in one request. */
export const maxEvaluations = 100;

export const evaluationsSemantics = ['execute_all', 'deny_on_first_deny', 'permit_on_first_permit'] as const;
export type EvaluationsSemantic = (typeof evaluationsSemantics)[number];

type Part = 'subject' | 'action' | 'resource' | 'context';

function readSubject(v: Validator, path: string, value: unknown): DecisionRequest['principal'] | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['type', 'id', 'properties']);
  const type = v.string(join(path, 'type'), o.type, { oneOf: Object.keys(subjectTypes) });
  const id = v.string(join(path, 'id'), o.id, { pattern: idPattern, patternMessage: 'must be 1–512 characters without control characters' });
  if (o.properties !== undefined) v.object(join(path, 'properties'), o.properties);
  return type && id ? { type: subjectTypes[type]!, id } : undefined;
}

function readAction(v: Validator, path: string, value: unknown): string | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['name', 'properties']);
  if (o.properties !== undefined) v.object(join(path, 'properties'), o.properties);
  return v.string(join(path, 'name'), o.name, { maxLength: 128, pattern: scopePattern, patternMessage: 'must be a scope such as order:create' });
}

function readResource(v: Validator, path: string, value: unknown): DecisionRequest['resource'] | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['type', 'id', 'properties']);
  const type = v.string(join(path, 'type'), o.type, { oneOf: Object.keys(resourceTypes) });
  const id = v.string(join(path, 'id'), o.id, { pattern: idPattern, patternMessage: 'must be 1–512 characters without control characters' });
  const properties = o.properties === undefined ? {} : v.object(join(path, 'properties'), o.properties);
  let instrumentClass: string | undefined;
  let venue: string | undefined;
  if (type === 'instrument' && properties) {
    v.knownKeys(join(path, 'properties'), properties, ['instrument_class', 'venue']);
    if (properties.instrument_class !== undefined) instrumentClass = v.string(join(path, 'properties.instrument_class'), properties.instrument_class, shortString);
    if (properties.venue !== undefined) venue = v.string(join(path, 'properties.venue'), properties.venue, shortString);
  }
  if (v.problems.length !== before || !type || !id) return undefined;
  return { type: resourceTypes[type]!, id, ...(instrumentClass !== undefined ? { instrument_class: instrumentClass } : {}), ...(venue !== undefined ? { venue } : {}) };
}

function readLong(v: Validator, path: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return v.integer(path, value, { min, max });
}

function readStrings(v: Validator, path: string, value: unknown): string[] | undefined {
  const items = v.array(path, value, (p, s) => v.string(p, s, shortString), { unique: true });
  if (items && items.length > 64) return v.fail(path, 'must have at most 64 items');
  return items;
}

/** The mandate terms a caller might send: Clearance loads them itself (src/mandates/order-check.ts). */
const mandateTerms = ['scopes', 'instrument_classes', 'venues', 'regions', 'max_notional', 'currency'];

/**
 * `mandate: { id, version? }`: which mandate the order runs under (the version its token names;
 * without one, the current). Its terms are never the caller's to state: a caller-sent limit could
 * only be a wider one, so terms are refused rather than ignored.
 */
function readMandate(v: Validator, path: string, value: unknown): MandateRequest | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  for (const key of mandateTerms) {
    if (o[key] !== undefined) v.fail(join(path, key), "is loaded by Clearance from the mandate's version; send only id and version");
  }
  v.knownKeys(path, o, ['id', 'version', ...mandateTerms]);
  const id = v.string(join(path, 'id'), o.id, { pattern: mandateIdPattern, patternMessage: 'must be a mandate identifier' });
  const version = o.version === undefined ? undefined : readLong(v, join(path, 'version'), o.version, 1);
  return v.problems.length === before && id !== undefined ? { id, ...(version !== undefined ? { v: version } : {}) } : undefined;
}

/** A destination key as a caller spells it, in the form issuance gives Cedar (`destinationKey`). */
function normalisedDestinationKey(key: string): string {
  if (key.startsWith('caip10:')) return `caip10:${normalisedAccountId(key.slice('caip10:'.length))}`;
  if (key.startsWith('iban:')) return `iban:${key.slice('iban:'.length).toUpperCase()}`;
  return key;
}

/** Reads an AuthZEN context into the policy schema's RequestContext (less `time`). */
export function readContext(v: Validator, path: string, value: unknown): DecisionContext | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  const context: DecisionContext = {};
  for (const key of Object.keys(o)) {
    const at = join(path, key);
    const item = o[key];
    switch (key) {
      case 'region':
      case 'acr':
      case 'kyc_status':
      case 'instrument_class':
      case 'venue':
        context[key] = v.string(at, item, shortString);
        break;
      // A transfer's fields (docs/transfers.md), as the resource server executing it sends them:
      // the same attributes the token's issuance was decided on.
      case 'transfer_type':
      case 'chain':
      case 'destination_kind':
        context[key] = v.string(at, item, shortString);
        break;
      case 'asset': {
        // Compared as issuance compares it: one spelling per asset (an ERC-20 contract in lower case).
        const asset = v.string(at, item, shortString);
        if (asset !== undefined) context.asset = assetKey(asset);
        break;
      }
      case 'destination': {
        // The address book's key (docs/transfers.md): a CAIP-10 address normalised, an IBAN in upper case.
        const destination = v.string(at, item, shortString);
        if (destination !== undefined) context.destination = normalisedDestinationKey(destination);
        break;
      }
      case 'purpose':
        context.purpose = v.string(at, item, { ...shortString, maxLength: 140 });
        break;
      case 'amount':
        context.amount = readLong(v, at, item, 0);
        break;
      case 'travel_rule_present':
        context.travel_rule_present = v.boolean(at, item);
        break;
      case 'currency':
        context.currency = v.string(at, item, { pattern: /^[A-Z]{3}$/, patternMessage: 'must be an ISO 4217 currency code' });
        break;
      case 'suitability':
        context.suitability = readStrings(v, at, item);
        break;
      case 'notional':
        context.notional = readLong(v, at, item, 0);
        break;
      case 'auth_time':
        // The person's authentication, as their access token says (the guard sends it): Clearance
        // derives auth_age from it.
        context.auth_time = readLong(v, at, item, 0);
        break;
      case 'mandate':
        // Validated here; toRequest carries it as the request's `mandate`, whose terms Clearance loads.
        readMandate(v, at, item);
        break;
      case 'txn':
        // The token's txn (src/transactions/txn.ts), for the record only: toRequest carries it.
        if (!isTxn(item)) v.fail(at, 'must be 1 to 64 letters, digits or . _ : -');
        break;
      case 'time':
        v.fail(at, "is Clearance's own clock; do not send it");
        break;
      case 'acr_levels':
      case 'auth_age':
      case 'local_time':
      case 'local_weekday':
      case 'new_instrument_class':
      case 'new_settlement_account':
      case 'risk':
        v.fail(at, 'is computed by Clearance; do not send it');
        break;
      default:
        v.fail(at, 'is not an attribute of the policy context (see docs/policy.md)');
    }
  }
  return v.problems.length === before ? context : undefined;
}

/** One evaluation's parts, before defaults are applied. */
type Parts = Partial<Record<Part, unknown>>;

function toRequest(v: Validator, path: string, parts: Parts, where: (part: Part) => string): DecisionRequest | undefined {
  const before = v.problems.length;
  for (const part of ['subject', 'action', 'resource'] as const) {
    if (parts[part] === undefined) v.fail(join(path, part), 'is required');
  }
  if (v.problems.length !== before) return undefined;
  const principal = readSubject(v, where('subject'), parts.subject);
  const action = readAction(v, where('action'), parts.action);
  const resource = readResource(v, where('resource'), parts.resource);
  const context = parts.context === undefined ? {} : readContext(v, where('context'), parts.context);
  if (v.problems.length !== before) return undefined;
  const sent = parts.context as Record<string, unknown> | undefined;
  const mandate = sent?.mandate === undefined ? undefined : readMandate(new Validator(), '', sent.mandate);
  return { principal: principal!, action: action!, resource: resource!, context: context!, ...(isTxn(sent?.txn) ? { txn: sent.txn } : {}), ...(mandate ? { mandate } : {}) };
}

/** §6.1: `{ subject, action, resource, context? }`. */
export function readEvaluationRequest(body: unknown): { request?: DecisionRequest; problems: Problem[] } {
  const v = new Validator();
  const o = v.object('', body);
  if (!o) return { problems: [{ path: '', message: 'the body must be a JSON object' }] };
  v.knownKeys('', o, ['subject', 'action', 'resource', 'context']);
  const request = toRequest(v, '', o, (part) => part);
  return v.ok && request ? { request, problems: [] } : { problems: v.problems };
}

/**
 * §7.1: top-level subject, action, resource and context are defaults for each item of
 * `evaluations`, which may set any of them (an item's value replaces the default). Without
 * `evaluations` (or with an empty array) it is one evaluation (§7.1: backwards compatible).
 */
export function readEvaluationsRequest(body: unknown): { requests?: DecisionRequest[]; single?: boolean; semantic: EvaluationsSemantic; problems: Problem[] } {
  const v = new Validator();
  const semantic: EvaluationsSemantic = 'execute_all';
  const o = v.object('', body);
  if (!o) return { semantic, problems: [{ path: '', message: 'the body must be a JSON object' }] };
  v.knownKeys('', o, ['subject', 'action', 'resource', 'context', 'evaluations', 'options']);
  let chosen: EvaluationsSemantic = semantic;
  if (o.options !== undefined) {
    const options = v.object('options', o.options);
    if (options?.evaluations_semantic !== undefined) {
      chosen = (v.string('options.evaluations_semantic', options.evaluations_semantic, { oneOf: evaluationsSemantics }) as EvaluationsSemantic | undefined) ?? semantic;
    }
  }
  if (o.evaluations === undefined || (Array.isArray(o.evaluations) && o.evaluations.length === 0)) {
    const request = toRequest(v, '', o, (part) => part);
    return v.ok && request ? { requests: [request], single: true, semantic: chosen, problems: [] } : { semantic, problems: v.problems };
  }
  if (!Array.isArray(o.evaluations)) return { semantic, problems: [{ path: 'evaluations', message: 'must be an array' }] };
  if (o.evaluations.length > maxEvaluations) return { semantic, problems: [{ path: 'evaluations', message: `must have at most ${maxEvaluations} items` }] };
  const requests: DecisionRequest[] = [];
  o.evaluations.forEach((item, i) => {
    const path = `evaluations[${i}]`;
    const entry = v.object(path, item);
    if (!entry) return;
    v.knownKeys(path, entry, ['subject', 'action', 'resource', 'context']);
    const parts: Parts = {};
    const where: Partial<Record<Part, string>> = {};
    for (const part of ['subject', 'action', 'resource', 'context'] as const) {
      parts[part] = entry[part] ?? o[part];
      where[part] = entry[part] !== undefined ? join(path, part) : part;
    }
    const request = toRequest(v, path, parts, (part) => where[part]!);
    if (request) requests.push(request);
  });
  return v.ok ? { requests, single: false, semantic: chosen, problems: [] } : { semantic, problems: v.problems };
}

/**
 * §6.2 / §7.2: `{ decision, context }`; the context carries the reasons and the policy version. A
 * deny that a stronger authentication of the person would lift also carries `step_up` —
 * `{ acr_values, max_age?, policies }` — which the guard turns into the RFC 9470 challenge
 * (docs/guard.md). The decision stays false: a step-up is a deny.
 */
export function evaluationResponse(decision: Decision): { decision: boolean; context: Record<string, unknown> } {
  const by = decision.reasons.length ? decision.reasons.join(', ') : decision.allow ? '' : 'no policy permits';
  const admin = decision.errors.length
    ? `denied: ${decision.errors.join('; ')}`
    : `${decision.allow ? 'allowed' : 'denied'}${by ? ` by ${by}` : ''}`;
  return {
    decision: decision.allow,
    context: {
      policy_version: decision.policyVersion,
      reasons: decision.reasons,
      reason_admin: { en: `${admin} (policy set ${decision.policyVersion})` },
      ...(decision.allow ? {} : { reason_user: { en: decision.stepUp ? 'a stronger or more recent sign-in is needed' : 'not permitted by policy' } }),
      ...(decision.stepUp ? { step_up: stepUpDetails(decision.stepUp) } : {}),
    },
  };
}
