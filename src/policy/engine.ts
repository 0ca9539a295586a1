import { createHash } from 'node:crypto';
import {
  checkParseSchema,
  policyToJson,
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
  validate,
  type CedarValueJson,
  type DetailedError,
  type PolicyJson,
} from '@cedar-policy/cedar-wasm/nodejs';
import { bandedKey } from './bands.ts';
import { approveAction, cedarSchema, policyActions, schemaVersion } from './schema.ts';
import { actionEntity, actionTargets, contextConforms, entitiesByUid, entityOf, planFor, planOf, policyFacts, sliceContext, sliceEntities, withAnyAction, type PolicyFacts, type SlicePlan } from './slicing.ts';
import { requestView, unsatisfied } from './unsatisfied.ts';
import { readStepUpAnnotations, type PolicyStepUp } from './step-up.ts';
import { BoundedMap } from '../jose/bounded-map.ts';
import { hotCounter } from '../metrics.ts';

/**
 * Cedar evaluation, without a database: compiling a policy set (parse, require ids, validate
 * against the schema, preparse) and deciding one request against it, failing closed. Used by the
 * server's decision function (decide.ts), `clearance policy test` and `policy simulate`.
 *
 * The wasm build for Node (`@cedar-policy/cedar-wasm/nodejs`, CommonJS, loads its .wasm
 * synchronously) is used: the package's default ESM entry imports the .wasm as an ES module, which
 * Node 24 flags as experimental.
 */

export interface EntityUid {
  type: string;
  id: string;
}

/** A Cedar entity in its JSON form (attribute values are Cedar JSON: `{ "__entity": ... }` for references). */
export interface CedarEntity {
  uid: EntityUid;
  attrs: Record<string, CedarValueJson>;
  parents: EntityUid[];
}

/** One authorization request as Cedar evaluates it: the entities it may look at travel with it. */
export interface CedarRequest {
  principal: EntityUid;
  /** The action id: a scope such as `order:create` (type `Action`). */
  action: string;
  resource: EntityUid;
  context: Record<string, CedarValueJson>;
  entities: CedarEntity[];
}

/** The outcome of one evaluation. `allow` is true only when Cedar allowed AND nothing erred. */
export interface Evaluation {
  allow: boolean;
  /** The determining policies' ids (`@id`): the permits that allowed, or the forbids that denied. */
  reasons: string[];
  /** Evaluation errors (a policy that erred is skipped by Cedar; here any error denies). */
  errors: string[];
}

/** A file of policy text. */
export interface PolicySource {
  /** Shown in problems (a file name, or `policies[0].text`). */
  name: string;
  text: string;
  /**
   * Overlays (`policy simulate --candidate A --candidate B`): a policy of a higher layer replaces
   * the one with the same `@id` from a lower layer; the same id twice in one layer is an error.
   */
  layer?: number;
}

/** Something wrong with a policy set, at a place in its source. */
export interface PolicyProblem {
  source: string;
  /** 1-based; absent when the problem is not at one place. */
  line?: number;
  column?: number;
  policyId?: string;
  message: string;
}

export function formatPolicyProblem(problem: PolicyProblem): string {
  const where = problem.line !== undefined ? `${problem.source}:${problem.line}:${problem.column}` : problem.source;
  return `${where}: ${problem.policyId ? `policy "${problem.policyId}": ` : ''}${problem.message}`;
}

/** A policy set ready to evaluate (parsed and validated once, preparsed in the wasm module). */
export interface CompiledPolicySet {
  /** The version it was stored as (or a label for files under test). */
  version: string;
  /** SHA-256 (hex) of the sources. */
  digest: string;
  /** Policy ids in source order. */
  policyIds: string[];
  /** The id under which the wasm module holds it preparsed. */
  readonly preparsedId: string;
  /** Each policy with what it reads, for slicing requests (slicing.ts). */
  readonly policies: readonly PolicyFacts[];
  /** The step-up forbids (`@step_up`), by id (step-up.ts). */
  readonly stepUps: ReadonlyMap<string, PolicyStepUp>;
  /** The forbids a person's passkey approval of the order lifts (`@approval`), by id (step-up.ts). */
  readonly approvals: ReadonlySet<string>;
  /** The forbids second persons' approvals lift (`@approval("four-eyes")`), by id (step-up.ts). */
  readonly fourEyes: ReadonlySet<string>;
  /**
   * The permits that name the `approve` action itself (`action == Action::"approve"` or a list
   * holding it): only these make anyone an approver (src/approvals/four-eyes.ts), so a broad
   * `permit (principal, action, resource)` never does.
   */
  readonly approvePermits: ReadonlySet<string>;
  /** The context attributes some policy reads; `all` when one reads the context whole. */
  readonly contextReads: ReadonlySet<string> | 'all';
}

/** Whether a policy's action scope names `Action::"approve"` itself (not through `action` alone or a group). */
function namesApprove(json: PolicyJson): boolean {
  const scope = json.action as { op: string; entity?: unknown; entities?: unknown[] };
  if (scope.op === 'All') return false;
  return actionTargets(scope).some((t) => {
    const uid = entityOf(t);
    return uid?.type === 'Action' && uid.id === approveAction;
  });
}

/** The action a second person's approval is decided as (src/approvals/four-eyes.ts; declared in schema.ts). */
export { approveAction };

/** `@id("...")`: every policy names itself, so reasons and audit events are readable and stable. */
const policyIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

let schemaReady = false;

/** Parses the schema into the wasm module once per process. */
function ensureSchema(): void {
  if (schemaReady) return;
  const parsed = checkParseSchema(cedarSchema);
  if (parsed.type !== 'success') throw new Error(`the Cedar schema does not parse: ${parsed.errors.map((e) => e.message).join('; ')}`);
  const preparsed = preparseSchema(schemaVersion, cedarSchema);
  if (preparsed.type !== 'success') throw new Error(`the Cedar schema does not preparse: ${preparsed.errors.map((e) => e.message).join('; ')}`);
  const empty = preparsePolicySet(noPolicies, { staticPolicies: {} });
  if (empty.type !== 'success') throw new Error(`the empty policy set does not preparse: ${empty.errors.map((e) => e.message).join('; ')}`);
  schemaReady = true;
}

/** A set of no policies, to ask Cedar whether entities conform without deciding anything. */
const noPolicies = 'clearance:no-policies';

/** A policy's text and where it starts in its source. */
interface Chunk {
  source: PolicySource;
  start: number;
  text: string;
}

/**
 * Splits policy text into policies at each top-level `;` (Cedar has no other use for it outside
 * string literals and `//` comments), keeping offsets so problems point into the original file.
 */
export function splitPolicies(source: PolicySource): Chunk[] {
  const chunks: Chunk[] = [];
  const text = source.text;
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === ';') {
      chunks.push({ source, start, text: text.slice(start, i + 1) });
      start = i + 1;
      i++;
    } else {
      i++;
    }
  }
  // Trailing text without a `;`: a policy cut short (an error) unless it is only comments and space.
  const rest = text.slice(start);
  if (rest.replace(/\/\/[^\n]*/g, '').trim() !== '') chunks.push({ source, start, text: rest });
  return chunks;
}

function position(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function problemAt(chunk: Chunk, error: DetailedError, policyId?: string): PolicyProblem {
  const offset = chunk.start + (error.sourceLocations?.[0]?.start ?? leadingSpace(chunk.text));
  const message = error.help ? `${error.message} (${error.help})` : error.message;
  return { source: chunk.source.name, ...position(chunk.source.text, offset), ...(policyId ? { policyId } : {}), message };
}

function leadingSpace(text: string): number {
  let i = 0;
  for (;;) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (text.startsWith('//', i)) while (i < text.length && text[i] !== '\n') i++;
    else return i;
  }
}

/** The digest of a set of sources (name and text), which identifies its compiled form. */
export function digestSources(sources: readonly PolicySource[]): string {
  const hash = createHash('sha256');
  for (const s of sources) hash.update(`${s.layer ?? 0}:${s.name.length}:${s.name}${s.text.length}:${s.text}`);
  return hash.digest('hex');
}

const compiledByDigest = new Map<string, CompiledPolicySet>();

/**
 * Compiles policy sources into one set: every policy parses, carries a unique `@id`, and
 * validates against the schema in strict mode (so, for instance, an optional attribute is read
 * only after a `has` test). Returns every problem with its source, line and column, or the set,
 * preparsed in the wasm module under its digest (compiling the same sources again is free).
 */
export function compilePolicySet(version: string, sources: readonly PolicySource[]): { set?: CompiledPolicySet; problems: PolicyProblem[] } {
  ensureSchema();
  const digest = digestSources(sources);
  const known = compiledByDigest.get(`${version}\n${digest}`);
  if (known) return { set: known, problems: [] };

  const problems: PolicyProblem[] = [];
  const byId = new Map<string, Chunk>();
  const jsonById = new Map<string, PolicyJson>();
  for (const source of sources) {
    for (const chunk of splitPolicies(source)) {
      const parsed = policyToJson(chunk.text);
      if (parsed.type !== 'success') {
        for (const error of parsed.errors) problems.push(problemAt(chunk, error));
        continue;
      }
      const id = parsed.json.annotations?.id;
      const stepUpProblem = readStepUpAnnotations(parsed.json).problem;
      if (stepUpProblem !== undefined) problems.push(problemAt(chunk, { message: stepUpProblem, help: null, code: null, url: null, severity: null }, id ?? undefined));
      if (id === undefined) {
        problems.push(problemAt(chunk, { message: 'has no @id("...") annotation; every policy needs a unique id', help: null, code: null, url: null, severity: null }));
      } else if (!policyIdPattern.test(id)) {
        problems.push(problemAt(chunk, { message: `@id "${id}" must be 1–128 letters, digits and . _ : -`, help: null, code: null, url: null, severity: null }));
      } else if (byId.has(id) && (byId.get(id)!.source.layer ?? 0) < (source.layer ?? 0)) {
        byId.set(id, chunk);
        jsonById.set(id, parsed.json);
      } else if (byId.has(id)) {
        const first = byId.get(id)!;
        const at = position(first.source.text, first.start + leadingSpace(first.text));
        problems.push(problemAt(chunk, { message: `@id "${id}" is also used at ${first.source.name}:${at.line}:${at.column}`, help: null, code: null, url: null, severity: null }));
      } else {
        byId.set(id, chunk);
        jsonById.set(id, parsed.json);
      }
    }
  }
  if (problems.length) return { problems };

  const staticPolicies = Object.fromEntries([...byId].map(([id, chunk]) => [id, chunk.text]));
  const validation = validate({ schema: cedarSchema, policies: { staticPolicies }, validationSettings: { mode: 'strict' } });
  if (validation.type !== 'success') {
    return { problems: validation.errors.map((e) => ({ source: sources.map((s) => s.name).join(', '), message: e.message })) };
  }
  // The validator checks a policy once per action it may apply to: report each problem once.
  const seen = new Set<string>();
  for (const { policyId, error } of validation.validationErrors) {
    const chunk = byId.get(policyId);
    const general = { ...error, message: error.message.replace(/ for Action::"[^"]*"/g, '').replace(/^for policy `[^`]*`, /, '') };
    const problem = chunk ? problemAt(chunk, general, policyId) : { source: sources.map((s) => s.name).join(', '), policyId, message: general.message };
    const key = `${policyId}\n${problem.line}:${problem.column}\n${problem.message}`;
    if (!seen.has(key)) problems.push(problem);
    seen.add(key);
  }
  if (problems.length) return { problems };

  const preparsedId = `${version}\n${digest}`;
  const preparsed = preparsePolicySet(preparsedId, { staticPolicies });
  if (preparsed.type !== 'success') {
    return { problems: preparsed.errors.map((e) => ({ source: sources.map((s) => s.name).join(', '), message: e.message })) };
  }
  const policies = [...byId].map(([id, chunk]) => policyFacts(id, chunk.text, jsonById.get(id)!));
  const stepUps = new Map<string, PolicyStepUp>();
  const approvals = new Set<string>();
  const fourEyes = new Set<string>();
  const approvePermits = new Set<string>();
  for (const [id, json] of jsonById) {
    const { stepUp, approval, fourEyes: byOthers } = readStepUpAnnotations(json);
    if (stepUp) stepUps.set(id, stepUp);
    if (approval) approvals.add(id);
    if (byOthers) fourEyes.add(id);
    if (json.effect === 'permit' && namesApprove(json)) approvePermits.add(id);
  }
  const contextReads = policies.some((p) => p.reads.contextWhole) ? 'all' : new Set(policies.flatMap((p) => [...p.reads.context]));
  const set: CompiledPolicySet = { version, digest, policyIds: [...byId.keys()], preparsedId, policies, stepUps, approvals, fourEyes, approvePermits, contextReads };
  compiledByDigest.set(preparsedId, set);
  return { set, problems: [] };
}

/**
 * Decides one request, failing closed: deny by default (no permit applies), forbid wins, and ANY
 * error denies — a request that does not match the schema (unknown action, a context attribute of
 * the wrong type, an entity that does not conform), or an error while evaluating a policy (Cedar
 * skips a policy that errs, which would let a request through when the skipped policy was a
 * forbid). Never throws for a bad request.
 *
 * Cedar is asked the request sliced to what the set's policies can read (slicing.ts, unsatisfied.ts),
 * and the answer is remembered for the same request under the same set: evaluation is a pure
 * function of the set, the schema and the request (its context carries the time), so an answer
 * remembered is the answer Cedar would give again. A context attribute the policies only compare
 * with integer literals is remembered by its band between them (bands.ts).
 */
export function evaluate(set: CompiledPolicySet, request: CedarRequest): Evaluation {
  ensureSchema();
  let key: string;
  let known: SetState;
  let shape: Shape | undefined;
  try {
    known = stateOf(set);
    shape = shapeOf(set, known, request);
    // The whole request as Cedar would read it (the wasm binding sends JSON.stringify of the call),
    // a notional by its band of the limits the policies compare it with (bands.ts).
    key = bandedKey(wholeCall(set, request), shape?.plan.bands);
  } catch (error) {
    return failed(error);
  }
  const remembered = answers.get(key);
  if (remembered) {
    answerSources.remembered.n++;
    return copy(remembered);
  }
  let call: CedarCall;
  try {
    call = slicedCall(set, request, known, shape);
  } catch (error) {
    return failed(error);
  }
  answerSources[call.checked ? 'checked' : 'schema'].n++;
  const evaluation = ask(call);
  if (evaluation instanceof Error) return failed(evaluation);
  answers.set(key, evaluation);
  return copy(evaluation);
}

/**
 * Decides as `evaluate` does with Cedar asked the whole request, nothing sliced or remembered: the
 * reference the tests hold `evaluate` to.
 */
export function evaluateWhole(set: CompiledPolicySet, request: CedarRequest): Evaluation {
  ensureSchema();
  const evaluation = ask(wholeCall(set, request));
  return evaluation instanceof Error ? failed(evaluation) : evaluation;
}

type CedarCall = ReturnType<typeof wholeCall> & {
  /**
   * The request is known to conform to the schema (checkedCall): Cedar evaluates it without the
   * schema, which it would otherwise apply to the call's entities, context and request again.
   */
  checked?: true;
};

function wholeCall(set: CompiledPolicySet, request: CedarRequest) {
  return {
    principal: request.principal,
    action: { type: 'Action', id: request.action },
    resource: request.resource,
    context: request.context,
    entities: request.entities,
    preparsedPolicySetId: set.preparsedId,
  };
}

/** Cedar's answer, failing closed; the error when the call threw (an answer not to remember). */
function ask(call: CedarCall): Evaluation | Error {
  const { checked, ...request } = call;
  let answer;
  try {
    answer = statefulIsAuthorized(checked ? request : { ...request, preparsedSchemaName: schemaVersion, validateRequest: true });
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
  if (answer.type !== 'success') return { allow: false, reasons: [], errors: answer.errors.map((e) => e.message) };
  const { decision, diagnostics } = answer.response;
  // Sorted, as the reasons are: Cedar lists them in an order that varies from call to call.
  const errors = diagnostics.errors.map((e) => `policy "${e.policyId}": ${e.error.message}`).sort();
  return { allow: decision === 'allow' && errors.length === 0, reasons: [...diagnostics.reason].sort(), errors };
}

function failed(error: unknown): Evaluation {
  return { allow: false, reasons: [], errors: [`the policy engine failed: ${(error as Error).message}`] };
}

const answeredBy = hotCounter({
  name: 'clearance_policy_engine_answers_total',
  help: 'Policy evaluations by how they were answered: remembered (the same request under the same set before, a notional by its band between the limits the policies compare it with), checked (Cedar asked without the schema, the request known to conform), schema (Cedar asked with the schema: a request it may refuse).',
  labelNames: ['source'],
});
const answerSources = { remembered: answeredBy({ source: 'remembered' }), checked: answeredBy({ source: 'checked' }), schema: answeredBy({ source: 'schema' }) };

/** Enough for the distinct requests of a busy second; each entry is about a kilobyte. */
export const rememberedAnswers = 8192;
/** Answers by request (with the preparsed set it names), oldest first. */
const answers = new BoundedMap<string, Evaluation>(rememberedAnswers);

function copy(evaluation: Evaluation): Evaluation {
  return { allow: evaluation.allow, reasons: [...evaluation.reasons], errors: [...evaluation.errors] };
}

/**
 * The Cedar call for a request: the policies it can satisfy (unsatisfied.ts) among those whose
 * scope can match, the context they read, and the entities they read when every entity of the
 * request conforms (else all of them); the whole request when its shape is not the schema's. A
 * request known to conform is asked without the schema (checkedCall).
 */
function slicedCall(set: CompiledPolicySet, request: CedarRequest, known: SetState, shape: Shape | undefined): CedarCall {
  const whole = wholeCall(set, request);
  if (!shape) return whole;
  let chosen = shape;
  const view = requestView(request);
  if (view) {
    const ids = shape.plan.policyIds.filter((id) => !unsatisfied(known.facts.get(id)!.json, view));
    if (ids.length < shape.plan.policyIds.length) chosen = subset(set, known, ids) ?? shape;
  }
  // Entities are cut only when each conforms: otherwise Cedar gets them whole, and refuses them.
  const byKey = entitiesByUid(request);
  const conforming = byKey !== undefined && request.entities.every(conforms);
  // A condition naming an action entity needs every action entity: the schema brings them.
  const checked = conforming && !chosen.plan.reads.actionLiterals && shapeConforms(request) && contextConforms(request.context);
  const sliceFor = checked ? 'checked' : 'schema';
  const context = sliceContext(chosen.plan, request.context, sliceFor);
  const entities = (conforming && sliceEntities(chosen.plan, request, sliceFor, byKey)) || request.entities;
  const call = { ...whole, context, entities, preparsedPolicySetId: chosen.preparsedId };
  return checked ? checkedCall(call, actionFree(known, chosen)) : call;
}

/**
 * A call whose request is known to conform to the schema — its shape (shapeConforms), its whole
 * context (slicing.ts `contextConforms`) and each of its entities (`conforms`), none an action —
 * asked without the schema. Cedar with the schema spends about 70 µs a call (a fifth of it,
 * measured with one example order's five entities) converting and checking again what is known
 * to conform; without it, the attributes the schema requires and no policy reads need not be sent
 * either (sliced `checked`). The schema would have added the action entity, with its groups, for
 * `action in Action::"trading"`: the call asks the policies with their action scopes made `action`
 * (`actionFree`; each scope certainly matches this action, or planFor would not have kept it)
 * and brings no action entity, about 14 µs of an 80 µs call; where no such set is made (a
 * condition reads `action`, a scope names anything but actions, the set's subsets are at their
 * limit) it brings the entity. A call whose policies name an action entity in a condition is not
 * checked: the schema brings them all (slicedCall). Evaluation is the same, and the tests hold
 * every answer to `evaluateWhole`, which keeps the schema.
 */
function checkedCall(call: CedarCall, actionFreeId: string | undefined): CedarCall {
  if (actionFreeId !== undefined) return { ...call, preparsedPolicySetId: actionFreeId, checked: true };
  return { ...call, entities: [...call.entities, actionEntity(call.action.id)], checked: true };
}

/**
 * The shape's policies with every action scope made `action`, preparsed once per shape (slicing.ts
 * `withAnyAction`); undefined when a condition reads `action`, a scope names anything but actions,
 * or the set holds its limit of preparsed subsets.
 */
function actionFree(known: SetState, shape: Shape): string | undefined {
  if (shape.actionFreeId !== undefined) return shape.actionFreeId ?? undefined;
  shape.actionFreeId = null;
  if (shape.plan.reads.action || known.subsets.size + known.actionFree >= subsetLimit) return undefined;
  const policies: Record<string, PolicyJson> = {};
  for (const id of shape.plan.policyIds) {
    const json = withAnyAction(known.facts.get(id)!.json);
    if (!json) return undefined;
    policies[id] = json;
  }
  known.actionFree++;
  const preparsedId = `${shape.preparsedId}\n#any-action`;
  if (preparsePolicySet(preparsedId, { staticPolicies: policies }).type === 'success') shape.actionFreeId = preparsedId;
  return shape.actionFreeId ?? undefined;
}

/** By principal type, action and resource type: whether the schema takes a request of that shape. */
const shapes = new Map<string, boolean>();
/** Actions are the schema's and types are few; a caller's unknown names are bounded all the same. */
const shapesLimit = 4096;

/** Whether Cedar's request validation accepts the request's principal type, action and resource type, asked once per shape. */
function shapeConforms(request: CedarRequest): boolean {
  const key = `${request.principal.type}\n${request.action}\n${request.resource.type}`;
  let known = shapes.get(key);
  if (known === undefined) {
    let answer;
    try {
      answer = statefulIsAuthorized({
        principal: { type: request.principal.type, id: request.principal.id },
        action: { type: 'Action', id: request.action },
        resource: { type: request.resource.type, id: request.resource.id },
        context: { time: 0 },
        entities: [],
        preparsedSchemaName: schemaVersion,
        preparsedPolicySetId: noPolicies,
        validateRequest: true,
      });
    } catch {
      return false;
    }
    known = answer.type === 'success';
    if (shapes.size >= shapesLimit) shapes.clear();
    shapes.set(key, known);
  }
  return known;
}

interface Shape {
  plan: SlicePlan;
  /** The preparsed subset of the set's policies the plan keeps. */
  preparsedId: string;
  /** The same policies with their action scopes made `action` (`actionFree`): not yet asked, or null when there is none. */
  actionFreeId?: string | null;
}

interface SetState {
  facts: Map<string, PolicyFacts>;
  /** By principal type, action and resource type: the policies whose scope can match (null: a shape the schema does not know). */
  byShape: Map<string, Shape | null>;
  /** By the ids it keeps: each subset preparsed (null: not preparsed, over the limit). */
  subsets: Map<string, Shape | null>;
  /** How many action-free variants of subsets were preparsed (they count toward the limit). */
  actionFree: number;
}

/** Subsets preparsed per set at most (each holds its policies in the wasm module). */
const subsetLimit = 512;

const states = new WeakMap<CompiledPolicySet, SetState>();

function stateOf(set: CompiledPolicySet): SetState {
  let state = states.get(set);
  if (!state) states.set(set, (state = { facts: new Map(set.policies.map((p) => [p.id, p])), byShape: new Map(), subsets: new Map(), actionFree: 0 }));
  return state;
}

function shapeOf(set: CompiledPolicySet, known: SetState, request: CedarRequest): Shape | undefined {
  const key = `${request.principal?.type}\n${request.action}\n${request.resource?.type}`;
  let shape = known.byShape.get(key);
  if (shape === undefined) {
    const plan = typeof request.principal?.type === 'string' && typeof request.resource?.type === 'string' ? planFor(set.policies, request.principal.type, request.action, request.resource.type) : undefined;
    shape = (plan && subset(set, known, plan.policyIds)) ?? null;
    known.byShape.set(key, shape);
  }
  return shape ?? undefined;
}

/** The shape keeping exactly `ids`, preparsed once; undefined past the limit or if it does not preparse. */
function subset(set: CompiledPolicySet, known: SetState, ids: string[]): Shape | undefined {
  const key = ids.join('\n');
  const cached = known.subsets.get(key);
  if (cached !== undefined) return cached ?? undefined;
  const plan = planOf(ids.map((id) => known.facts.get(id)!));
  if (ids.length === set.policyIds.length) {
    const shape = { plan, preparsedId: set.preparsedId };
    known.subsets.set(key, shape);
    return shape;
  }
  if (known.subsets.size + known.actionFree >= subsetLimit) return undefined;
  const preparsedId = `${set.preparsedId}\n#${known.subsets.size + 1}`;
  const preparsed = preparsePolicySet(preparsedId, { staticPolicies: Object.fromEntries(ids.map((id) => [id, known.facts.get(id)!.text])) });
  const shape = preparsed.type === 'success' ? { plan, preparsedId } : null;
  known.subsets.set(key, shape);
  return shape ?? undefined;
}

/** Entities found conforming to the schema, by their JSON (records change rarely; bounded all the same). */
const conforming = new Set<string>();
const conformingLimit = 16384;

/**
 * True when Cedar accepts `entity` alone against the schema (its type, attributes and parents'
 * types), asked once per distinct entity with no policy to evaluate, and each entity it refers to
 * is written `{ "__entity": ... }`: with the schema Cedar also takes a bare `{ type, id }` where an
 * attribute is an entity, but without it (a checked call) reads that as a record.
 */
function conforms(entity: CedarEntity): boolean {
  const json = JSON.stringify(entity);
  if (conforming.has(json)) return true;
  if (!Object.values(entity.attrs).every(explicitReferences)) return false;
  let answer;
  try {
    answer = statefulIsAuthorized({
      principal: entity.uid,
      action: { type: 'Action', id: policyActions[0]! },
      resource: entity.uid,
      context: { time: 0 },
      entities: [entity],
      preparsedSchemaName: schemaVersion,
      preparsedPolicySetId: noPolicies,
      validateRequest: false,
    });
  } catch {
    return false;
  }
  if (answer.type !== 'success') return false;
  if (conforming.size >= conformingLimit) conforming.clear();
  conforming.add(json);
  return true;
}

/**
 * True when every object in an attribute's value (within sets too) is an escape, `__entity` or
 * `__extn`: the schema gives entities no record attributes, so any other object is an entity
 * written bare, or a value the schema refuses.
 */
function explicitReferences(value: unknown): boolean {
  if (Array.isArray(value)) return value.every(explicitReferences);
  if (typeof value !== 'object' || value === null) return true;
  const keys = Object.keys(value);
  return keys.length === 1 && (keys[0] === '__entity' || keys[0] === '__extn');
}

/** Whether some policy of `set` reads context attribute `name` (so Clearance computes it). */
export function readsContext(set: CompiledPolicySet, name: string): boolean {
  return set.contextReads === 'all' || set.contextReads.has(name);
}
