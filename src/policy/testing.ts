import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join as joinPath } from 'node:path';
import type { CedarValueJson } from '@cedar-policy/cedar-wasm/nodejs';
import { parseDocument } from '../apply/parse.ts';
import { formatProblem, join, Validator } from '../validation.ts';
import { compilePolicySet, evaluate, formatPolicyProblem, type CedarEntity, type CedarRequest, type CompiledPolicySet, type EntityUid, type PolicySource } from './engine.ts';
import { uidText } from './request.ts';
import { stepUpOf, withDerivedAuthentication } from './step-up.ts';
import { acrLadder } from '../identity/acr.ts';

/**
 * Policy tests without a database (`clearance policy test DIR`): the `*.cedar` files of DIR are
 * the policy set; `DIR/tests/*.{yaml,yml,json}` hold cases — a request and the decision it must
 * get. A file with only `entities` is shared by every case; a file with `cases` may add its own
 * `entities` and default `context`.
 *
 *   entities:
 *     - uid: User::"alice"
 *       attrs: { status: active, kyc_status: verified, suitability: [fx], product_classes: [fx] }
 *       parents: [Desk::"fx-spot"]
 *   context: { time: 1767225600 }
 *   cases:
 *     - name: a verified FX trader may buy EUR/USD
 *       principal: User::"alice"
 *       action: order:create
 *       resource: Instrument::"EURUSD"
 *       context: { notional: 1000000 }
 *       expect: allow
 *       reasons: [fx-desk-trades-fx]     # optional: exactly these determining policies
 *     - name: a large order needs a passkey
 *       ...
 *       context: { notional: 20000000, acr: urn:clearance:acr:mfa }
 *       expect: deny
 *       step_up: urn:clearance:acr:phr  # optional: the deny is a step-up to this level (step-up.ts); none: a plain deny
 *
 * The context is completed as the server completes it: `acr_levels` from `acr`, `auth_age` from
 * `auth_time` (never from the case). What Clearance computes from its records — `local_time`,
 * `local_weekday`, `new_instrument_class`, `new_settlement_account` — a case states itself.
 */

/** Reads the policy files of a directory (or one file), in name order. */
export function readPolicySources(path: string): PolicySource[] {
  if (statSync(path).isDirectory()) {
    return readdirSync(path)
      .filter((name) => name.endsWith('.cedar'))
      .sort()
      .map((name) => ({ name: joinPath(path, name), text: readFileSync(joinPath(path, name), 'utf8') }));
  }
  return [{ name: path, text: readFileSync(path, 'utf8') }];
}

export interface TestCase {
  file: string;
  path: string;
  name: string;
  request: CedarRequest;
  expect: 'allow' | 'deny';
  reasons?: string[];
  /** The level the deny must ask to step up to; `none`: a plain deny. */
  stepUp?: string;
}

export interface CaseResult {
  testCase: TestCase;
  allow: boolean;
  reasons: string[];
  errors: string[];
  /** The level a deny asks to step up to (step-up.ts), if it is a step-up. */
  stepUp?: string;
  passed: boolean;
}

const uidPattern = /^([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::("(?:[^"\\]|\\.)*")$/;

function readUid(v: Validator, path: string, value: unknown): EntityUid | undefined {
  if (typeof value === 'string') {
    const match = uidPattern.exec(value);
    if (!match) return v.fail(path, 'must be an entity such as User::"alice"');
    try {
      return { type: match[1]!, id: JSON.parse(match[2]!) as string };
    } catch {
      return v.fail(path, 'has a malformed id');
    }
  }
  const o = v.object(path, value);
  if (!o) return undefined;
  const type = v.string(join(path, 'type'), o.type);
  const id = typeof o.id === 'string' ? o.id : v.fail(join(path, 'id'), 'must be a string');
  return type !== undefined && id !== undefined ? { type, id } : undefined;
}

function readEntity(v: Validator, path: string, value: unknown): CedarEntity | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['uid', 'attrs', 'parents']);
  const uid = readUid(v, join(path, 'uid'), o.uid);
  const attrs = o.attrs === undefined ? {} : v.object(join(path, 'attrs'), o.attrs);
  const parents = o.parents === undefined ? [] : v.array(join(path, 'parents'), o.parents, (p, x) => readUid(v, p, x));
  if (v.problems.length !== before) return undefined;
  return { uid: uid!, attrs: withEntityRefs(attrs!) as Record<string, CedarValueJson>, parents: parents! };
}

/** In attribute values, a string written `Type::"id"` is an entity reference. */
function withEntityRefs(value: unknown): unknown {
  if (typeof value === 'string') {
    const match = uidPattern.exec(value);
    if (match) {
      try {
        return { __entity: { type: match[1]!, id: JSON.parse(match[2]!) as string } };
      } catch {
        return value;
      }
    }
    return value;
  }
  if (Array.isArray(value)) return value.map(withEntityRefs);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, withEntityRefs(x)]));
  return value;
}

/** Loads every case of `DIR/tests`; problems are reported as `file: path: message`. */
export function loadTestCases(dir: string, nowSeconds: number): { cases: TestCase[]; problems: string[] } {
  const testsDir = joinPath(dir, 'tests');
  let names: string[];
  try {
    names = readdirSync(testsDir).filter((n) => /\.(ya?ml|json)$/i.test(n)).sort();
  } catch {
    return { cases: [], problems: [`${testsDir}: no such directory (test cases live in DIR/tests/*.yaml or *.json)`] };
  }
  const problems: string[] = [];
  const shared: CedarEntity[] = [];
  const files: { file: string; value: Record<string, unknown> }[] = [];
  for (const name of names) {
    const file = joinPath(testsDir, name);
    const parsed = parseDocument(readFileSync(file, 'utf8'), name);
    if (parsed.problems.length) {
      problems.push(...parsed.problems.map((p) => `${file}: ${formatProblem(p)}`));
      continue;
    }
    const v = new Validator();
    const o = v.object('', parsed.value);
    if (!o) {
      problems.push(`${file}: must be an object with entities and/or cases`);
      continue;
    }
    v.knownKeys('', o, ['entities', 'context', 'cases']);
    if (o.cases === undefined) {
      const entities = v.array('entities', o.entities ?? [], (p, x) => readEntity(v, p, x));
      if (entities) shared.push(...entities);
      problems.push(...v.problems.map((p) => `${file}: ${formatProblem(p)}`));
    } else {
      problems.push(...v.problems.map((p) => `${file}: ${formatProblem(p)}`));
      files.push({ file, value: o });
    }
  }
  const cases: TestCase[] = [];
  for (const { file, value } of files) {
    const v = new Validator();
    const own = value.entities === undefined ? [] : (v.array('entities', value.entities, (p, x) => readEntity(v, p, x)) ?? []);
    const defaults = value.context === undefined ? {} : (v.object('context', value.context) ?? {});
    const entities = new Map<string, CedarEntity>();
    for (const entity of [...shared, ...own]) entities.set(uidText(entity.uid), entity);
    v.array('cases', value.cases, (path, item) => {
      const o = v.object(path, item);
      if (!o) return undefined;
      const before = v.problems.length;
      v.knownKeys(path, o, ['name', 'principal', 'action', 'resource', 'context', 'entities', 'expect', 'reasons', 'step_up']);
      const name = v.string(join(path, 'name'), o.name);
      const principal = readUid(v, join(path, 'principal'), o.principal);
      const action = v.string(join(path, 'action'), o.action);
      const resource = readUid(v, join(path, 'resource'), o.resource);
      const context = o.context === undefined ? {} : v.object(join(path, 'context'), o.context);
      const extra = o.entities === undefined ? [] : v.array(join(path, 'entities'), o.entities, (p, x) => readEntity(v, p, x));
      const expect = v.string(join(path, 'expect'), o.expect, { oneOf: ['allow', 'deny'] }) as 'allow' | 'deny' | undefined;
      const reasons = o.reasons === undefined ? undefined : v.array(join(path, 'reasons'), o.reasons, (p, x) => v.string(p, x));
      const stepUp = o.step_up === undefined ? undefined : v.string(join(path, 'step_up'), o.step_up, { oneOf: [...acrLadder, 'none'] });
      if (stepUp !== undefined && expect === 'allow') v.fail(join(path, 'step_up'), 'a step-up is a deny: expect deny');
      if (v.problems.length !== before) return undefined;
      const caseEntities = new Map(entities);
      for (const entity of extra!) caseEntities.set(uidText(entity.uid), entity);
      const merged = withDerivedAuthentication(withEntityRefs({ time: nowSeconds, ...defaults, ...context }) as Record<string, CedarValueJson>);
      cases.push({
        file,
        path,
        name: name!,
        request: { principal: principal!, action: action!, resource: resource!, context: merged, entities: slice(caseEntities, [principal!, resource!]) },
        expect: expect!,
        ...(reasons !== undefined ? { reasons } : {}),
        ...(stepUp !== undefined ? { stepUp } : {}),
      });
      return true;
    });
    problems.push(...v.problems.map((p) => `${file}: ${formatProblem(p)}`));
  }
  return { cases, problems };
}

/**
 * The entities a request carries: the principal, the resource, and what they reach through their
 * parents and entity-valued attributes — as the server sends only the entities related to a
 * request (src/policy/request.ts), so a test never passes thanks to an entity the server would
 * not send.
 */
function slice(entities: ReadonlyMap<string, CedarEntity>, roots: EntityUid[]): CedarEntity[] {
  const kept = new Map<string, CedarEntity>();
  const visit = (uid: EntityUid) => {
    const key = uidText(uid);
    const entity = entities.get(key);
    if (!entity || kept.has(key)) return;
    kept.set(key, entity);
    entity.parents.forEach(visit);
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value === 'object') {
        const ref = (value as { __entity?: EntityUid }).__entity;
        if (ref) visit(ref);
        else Object.values(value).forEach(walk);
      }
    };
    walk(entity.attrs);
  };
  roots.forEach(visit);
  return [...kept.values()];
}

/** Runs every case against a compiled set. A case passes when the decision (and the reasons, if given) match. */
export function runTestCases(set: CompiledPolicySet, cases: TestCase[]): CaseResult[] {
  return cases.map((testCase) => {
    const evaluation = evaluate(set, testCase.request);
    const { allow, reasons, errors } = evaluation;
    const stepUp = stepUpOf(set, testCase.request, evaluation, evaluate)?.acr;
    const decisionOk = (testCase.expect === 'allow') === allow;
    const reasonsOk = testCase.reasons === undefined || [...testCase.reasons].sort().join('\n') === [...reasons].sort().join('\n');
    const stepUpOk = testCase.stepUp === undefined || testCase.stepUp === (stepUp ?? 'none');
    return { testCase, allow, reasons, errors, ...(stepUp !== undefined ? { stepUp } : {}), passed: decisionOk && reasonsOk && stepUpOk };
  });
}

/** Compiles DIR's policies and runs DIR/tests; what `clearance policy test` prints, and whether it passed. */
export function testPolicyDirectory(dir: string, nowSeconds: number): { ok: boolean; lines: string[]; results: CaseResult[] } {
  const sources = readPolicySources(dir);
  if (sources.length === 0) return { ok: false, lines: [`${dir}: no .cedar policy files`], results: [] };
  const compiled = compilePolicySet(basename(dir), sources);
  if (!compiled.set) return { ok: false, lines: [`${dir}: the policy set is invalid:`, ...compiled.problems.map((p) => `  ${formatPolicyProblem(p)}`)], results: [] };
  const { cases, problems } = loadTestCases(dir, nowSeconds);
  if (problems.length) return { ok: false, lines: [`${dir}: the test cases are invalid:`, ...problems.map((p) => `  ${p}`)], results: [] };
  if (cases.length === 0) return { ok: false, lines: [`${dir}/tests: no test cases`], results: [] };
  const results = runTestCases(compiled.set, cases);
  const failed = results.filter((r) => !r.passed);
  const lines = failed.map((r) => {
    const got = `${r.allow ? 'allow' : 'deny'}${r.reasons.length ? ` by ${r.reasons.join(', ')}` : ''}${r.stepUp ? ` (step up to ${r.stepUp})` : ''}${r.errors.length ? ` (errors: ${r.errors.join('; ')})` : ''}`;
    const wanted = `${r.testCase.expect}${r.testCase.reasons ? ` by ${r.testCase.reasons.join(', ') || 'no policy'}` : ''}${r.testCase.stepUp ? ` (step up to ${r.testCase.stepUp})` : ''}`;
    return `FAIL ${r.testCase.file} ${r.testCase.path} "${r.testCase.name}": expected ${wanted}, got ${got}`;
  });
  lines.push(`${results.length} cases: ${results.length - failed.length} passed, ${failed.length} failed (${compiled.set.policyIds.length} policies in ${sources.length} files)`);
  return { ok: failed.length === 0, lines, results };
}

