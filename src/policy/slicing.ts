import type { PolicyJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { CedarEntity, CedarRequest, EntityUid } from './engine.ts';
import { actionAppliesTo, actionGroups, cedarSchema } from './schema.ts';

/**
 * Slicing a decision to what its policies can read, so the Cedar call costs less and decides the
 * same. Cedar's wasm boundary costs in proportion to what a call carries — each entity, each uid
 * (parents, references), each attribute value, each policy — about 0.4 ms for a trader's order
 * with the example set, most of it before a policy is looked at. Every cut here is exact:
 *
 * - policies: only those whose scope can match the request's principal type, action and resource
 *   type. A policy whose scope does not match is not satisfied and never evaluates its conditions,
 *   so it can neither determine nor err (Cedar checks the scope first);
 * - entities: only the principal and the resource, when the policies read attributes of no other
 *   entity (any `.`/`has`/`in` on something but `principal`, `resource` or a context record makes
 *   the analysis give up and keep every entity), and each only when a policy reads it. A kept
 *   entity's parents are its ancestors flattened (the transitive closure Cedar computes anyway),
 *   cut to those an `in` can ask about, and its optional attributes to those a policy names;
 * - context: the optional attributes no policy reads are left out, each only when it certainly has
 *   its declared type (`sliceContext`); the rest, `time` among it, goes as it came;
 * - the principal, action and resource uids go unchanged, and the schema validates the request;
 * - a request known to conform is asked without the schema (engine.ts `checkedCall`), its policies'
 *   action scopes made `action` (`withAnyAction`: each certainly matches the request's action,
 *   or planFor would not keep the policy), so no action entity goes unless a condition reads the
 *   action; one whose policies name an action entity in a condition goes with the schema, which
 *   brings every action entity.
 *
 * What is cut is still held to the schema: the engine sends the entities unsliced (and Cedar then
 * reports the error) unless every entity of the request, whole, has been found conforming
 * (engine.ts). Which of the matching policies a request cannot satisfy is unsatisfied.ts.
 */

/** What the policies of a set may read of a request, from their JSON form (EST). */
export interface PolicyFacts {
  id: string;
  text: string;
  json: PolicyJson;
  reads: Reads;
}

interface EntityReads {
  /** Attribute names read (`.`) or tested (`has`). */
  attrs: Set<string>;
  /** `in` on it (scope or condition) against any entity: every ancestor matters. */
  inAny: boolean;
  /** `in` on it against these entities only (`Type::"id"` text): the ancestors among them matter. */
  inTargets: Set<string>;
}

interface Reads {
  principal: EntityReads;
  resource: EntityReads;
  /** An entity other than the principal or resource may be read: keep every entity. */
  opaque: boolean;
  /** Attributes of the context read (`.`) or tested (`has`). */
  context: Set<string>;
  /** The context used otherwise than through its attributes (compared whole, say): keep all of it. */
  contextWhole: boolean;
  /**
   * Context attributes compared (`<`, `<=`, `>`, `>=`, `==`, `!=`) with integer literals or with
   * a path into the context (`context.mandate.max_notional`): the literals and the paths.
   */
  contextBounds: Map<string, { literals: Set<number>; paths: Map<string, string[]> }>;
  /** Context attributes whose value is read otherwise (an operand of anything else, or compared with anything else). */
  contextValues: Set<string>;
  /** A condition reads `action` (its scope aside): the action entity, with its groups, must come with the call. */
  action: boolean;
  /**
   * A condition names an action entity (`Action::"order:cancel" in Action::"trading"`): Cedar needs
   * the schema's action entities, every one of them, so the call goes with the schema.
   */
  actionLiterals: boolean;
}

/** How a request of one shape (principal type, action, resource type) is sliced. */
export interface SlicePlan {
  /** The policies whose scope can match, in source order. */
  policyIds: string[];
  reads: Reads;
  /**
   * The context attributes these policies read only by comparing them with integer literals or
   * paths into the context, each with its bounds: two integers that fall alike on every bound
   * (bands.ts) are alike to these policies.
   */
  bands: ReadonlyMap<string, Band>;
}

/**
 * What a context attribute is compared with: integer literals (ascending), and paths into the
 * context whose value, where it is an integer, is a bound too (bands.ts).
 */
export interface Band {
  literals: readonly number[];
  paths: readonly (readonly string[])[];
}

const emptyReads = (): EntityReads => ({ attrs: new Set(), inAny: false, inTargets: new Set() });
const noReads = (): Reads => ({ principal: emptyReads(), resource: emptyReads(), opaque: false, context: new Set(), contextWhole: false, contextBounds: new Map(), contextValues: new Set(), action: false, actionLiterals: false });

/** Adds what `from` reads of an entity to `into`. */
function addEntityReads(into: EntityReads, from: EntityReads): void {
  from.attrs.forEach((a) => into.attrs.add(a));
  from.inTargets.forEach((t) => into.inTargets.add(t));
  into.inAny ||= from.inAny;
}

/** An entity uid as a map key (unsatisfied.ts indexes a request's entities by it too). */
export const uidKey = (uid: EntityUid) => `${uid.type}::${JSON.stringify(uid.id)}`;

/** The uid a policy's JSON names, written `{ __entity: { type, id } }` or bare `{ type, id }`. */
export function entityOf(value: unknown): EntityUid | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const inner = (v.__entity ?? v) as Record<string, unknown>;
  return typeof inner.type === 'string' && typeof inner.id === 'string' ? { type: inner.type, id: inner.id } : undefined;
}

/** The schema facts slicing needs: each entity type's optional attributes, and whether the context can hold an entity. */
export interface SchemaFacts {
  optional: Map<string, Set<string>>;
  contextHoldsEntities: boolean;
  /** The common (record) types by name: each attribute's type text and whether it is optional. */
  records: Map<string, Map<string, { type: string; optional: boolean }>>;
}

let facts: SchemaFacts | undefined;

/** Whether the schema lets an entity into the context (then a context value may be an entity). */
export function contextHoldsEntities(): boolean {
  return schemaFacts().contextHoldsEntities;
}

function schemaFacts(): SchemaFacts {
  facts ??= readSchemaFacts(cedarSchema);
  return facts;
}

/**
 * Reads the facts from the schema's text (schema.ts: one attribute a line). Cedar's schemaToJson
 * would do, but takes a quarter of a second; a test holds this reading to it.
 */
export function readSchemaFacts(schema: string): SchemaFacts {
  const text = schema.replace(/\/\/[^\n]*/g, '');
  const records = new Map<string, string[]>();
  const shapes = new Map<string, Map<string, { type: string; optional: boolean }>>();
  const optional = new Map<string, Set<string>>();
  const entityTypes = new Set<string>();
  for (const [, kind, name, body] of text.matchAll(/\b(entity|type)\s+(\w+)[^={;]*=\s*\{([^}]*)\}/g)) {
    const attributes = [...body!.matchAll(/(\w+)\s*(\??)\s*:\s*([^,]+)/g)];
    if (kind === 'entity') {
      entityTypes.add(name!);
      optional.set(name!, new Set(attributes.filter((a) => a[2] === '?').map((a) => a[1]!)));
    } else {
      records.set(name!, attributes.map((a) => a[3]!));
      shapes.set(name!, new Map(attributes.map((a) => [a[1]!, { type: a[3]!.trim(), optional: a[2] === '?' }])));
    }
  }
  // Entity types without a shape (`entity X;`) have no attributes.
  for (const [, name] of text.matchAll(/\bentity\s+(\w+)\s*(?:in\s*\[[^\]]*\]\s*)?;/g)) entityTypes.add(name!);
  const primitive = new Set(['String', 'Long', 'Bool', 'Boolean', 'Set']);
  const holdsEntity = (types: string[], seen: Set<string>): boolean =>
    types.some((type) =>
      [...type.matchAll(/\w+/g)].some(([word]) => {
        if (primitive.has(word)) return false;
        if (records.has(word)) return !seen.has(word) && holdsEntity(records.get(word)!, new Set([...seen, word]));
        return true; // an entity type, or a name this reading does not know
      }),
    );
  const context = records.get('RequestContext');
  return { optional, contextHoldsEntities: !context || holdsEntity(context, new Set(['RequestContext'])), records: shapes };
}

/** The facts of one policy: what its scope and conditions read. */
export function policyFacts(id: string, text: string, json: PolicyJson): PolicyFacts {
  const reads = noReads();
  scopeReads(reads.principal, json.principal as { op: string; entity?: unknown; in?: { entity?: unknown; slot?: string }; slot?: string });
  scopeReads(reads.resource, json.resource as { op: string; entity?: unknown; in?: { entity?: unknown; slot?: string }; slot?: string });
  for (const clause of json.conditions) walk(clause.body, reads);
  return { id, text, json, reads };
}

function scopeReads(target: EntityReads, scope: { op: string; entity?: unknown; in?: { entity?: unknown; slot?: string }; slot?: string }): void {
  const inConstraint = scope.op === 'in' ? scope : scope.op === 'is' ? scope.in : undefined;
  if (!inConstraint) return;
  const uid = entityOf(inConstraint.entity);
  if (uid) target.inTargets.add(uidKey(uid));
  else target.inAny = true;
}

type Node = Record<string, unknown>;

/** `principal` / `resource` when `expr` is exactly that variable. */
function variable(expr: unknown): 'principal' | 'resource' | 'context' | 'action' | undefined {
  const v = (expr as Node | undefined)?.Var;
  return v === 'principal' || v === 'resource' || v === 'context' || v === 'action' ? v : undefined;
}

/** True when `expr` is `context` or a chain of attributes of it (a record, unless the schema lets the context hold entities). */
function contextRecord(expr: unknown): boolean {
  if (schemaFacts().contextHoldsEntities) return false;
  let e = expr as Node | undefined;
  while (e && typeof e === 'object') {
    if (variable(e) === 'context') return true;
    const dot = e['.'] as Node | undefined;
    if (!dot) return false;
    e = dot.left as Node;
  }
  return false;
}

/** Records an attribute read or `has` test on `left`. */
function attributeRead(reads: Reads, left: unknown, attrs: string[]): void {
  const v = variable(left);
  if ((v === 'principal' || v === 'resource') && attrs.length === 1) reads[v].attrs.add(attrs[0]!);
  else if (!contextRecord(left)) reads.opaque = true;
}

/** Records `left in right` (and the `in` of `is ... in`). */
function inRead(reads: Reads, left: unknown, right: unknown): void {
  const v = variable(left);
  if (v === 'action') return; // the action hierarchy comes from the schema, never cut
  if (v !== 'principal' && v !== 'resource') {
    reads.opaque = true;
    return;
  }
  const targets = literalEntities(right);
  if (targets) targets.forEach((t) => reads[v].inTargets.add(uidKey(t)));
  else reads[v].inAny = true;
}

/** The entity literals of `Type::"id"` or `[Type::"a", ...]`, else undefined. */
function literalEntities(expr: unknown): EntityUid[] | undefined {
  const e = expr as Node;
  if ('Value' in e) {
    const values = Array.isArray(e.Value) ? e.Value : [e.Value];
    const uids = values.map(entityOf);
    return uids.every((u) => u !== undefined) ? (uids as EntityUid[]) : undefined;
  }
  if (Array.isArray(e.Set)) {
    const uids = e.Set.map((item) => literalEntities(item));
    return uids.every((u) => u !== undefined) ? (uids as EntityUid[][]).flat() : undefined;
  }
  return undefined;
}

const binary = ['==', '!=', '<', '<=', '>', '>=', '&&', '||', '+', '-', '*', 'contains', 'containsAll', 'containsAny'];

const comparisons = ['==', '!=', '<', '<=', '>', '>='];

/**
 * Records `context.x` compared with an integer literal or a path into the context (either way
 * round): one of x's bounds. True when it was such a comparison. The path is walked as any read
 * is, so its first attribute counts as read for its value: it is never banded itself, and stays in
 * the memory key whole.
 */
function boundRead(reads: Reads, op: string, left: unknown, right: unknown): boolean {
  if (!comparisons.includes(op)) return false;
  const leftAttr = contextAttribute(left);
  const [attr, other] = leftAttr !== undefined ? [leftAttr, right] : [contextAttribute(right), left];
  if (attr === undefined) return false;
  const value = (other as Node | undefined)?.Value;
  // A Long literal in the JSON form is a number; one beyond 2^53 would not read back exactly.
  const path = Number.isSafeInteger(value) ? undefined : contextPath(other);
  if (!Number.isSafeInteger(value) && !path) return false;
  attributeRead(reads, { Var: 'context' }, [attr]);
  reads.context.add(attr);
  let bounds = reads.contextBounds.get(attr);
  if (!bounds) reads.contextBounds.set(attr, (bounds = { literals: new Set(), paths: new Map() }));
  if (path) {
    bounds.paths.set(JSON.stringify(path), path);
    walk(other, reads);
  } else bounds.literals.add(value as number);
  return true;
}

/** Whether a literal value is, or holds, an entity of type Action. */
function namesAction(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(namesAction);
  if (typeof value !== 'object' || value === null) return false;
  if (entityOf(value)?.type === 'Action') return true;
  return Object.values(value).some(namesAction);
}

/** `x` when `expr` is exactly `context.x`. */
function contextAttribute(expr: unknown): string | undefined {
  const path = contextPath(expr);
  return path?.length === 1 ? path[0] : undefined;
}

/** The attribute names of `context.a.b…` (at least one), else undefined. */
function contextPath(expr: unknown): string[] | undefined {
  const dot = (expr as Node | undefined)?.['.'] as Node | undefined;
  if (!dot || typeof dot.attr !== 'string') return undefined;
  if (variable(dot.left) === 'context') return [dot.attr];
  const before = contextPath(dot.left);
  return before && [...before, dot.attr];
}

/** Walks a condition, recording every read; anything it does not know makes the set opaque. */
function walk(expr: unknown, reads: Reads): void {
  if (typeof expr !== 'object' || expr === null) {
    reads.opaque = true;
    return;
  }
  const node = expr as Node;
  const keys = Object.keys(node);
  if (keys.length !== 1) {
    reads.opaque = true;
    return;
  }
  const op = keys[0]!;
  const body = node[op] as Node;
  if (op === 'Value') {
    if (namesAction(body)) reads.actionLiterals = true;
    return;
  }
  if (op === 'Var') {
    if ((body as unknown) === 'context') reads.contextWhole = true;
    if ((body as unknown) === 'action') reads.action = true;
    return;
  }
  if (op === '.' || op === 'has') {
    const attrs = Array.isArray(body.attr) ? (body.attr as string[]) : [body.attr as string];
    attributeRead(reads, body.left, attrs);
    if (variable(body.left) === 'context') {
      reads.context.add(attrs[0]!);
      if (op === '.') reads.contextValues.add(attrs[0]!);
    } else walk(body.left, reads);
  } else if (op === 'in') {
    inRead(reads, body.left, body.right);
    walk(body.left, reads);
    walk(body.right, reads);
  } else if (op === 'is') {
    if (body.in !== undefined) {
      inRead(reads, body.left, body.in);
      walk(body.in, reads);
    }
    walk(body.left, reads);
  } else if (binary.includes(op)) {
    if (boundRead(reads, op, body.left, body.right)) return;
    walk(body.left, reads);
    walk(body.right, reads);
  } else if (op === '!' || op === 'neg' || op === 'isEmpty') {
    walk(body.arg, reads);
  } else if (op === 'like') {
    walk(body.left, reads);
  } else if (op === 'if-then-else') {
    walk(body.if, reads);
    walk(body.then, reads);
    walk(body.else, reads);
  } else if (op === 'Set' && Array.isArray(body)) {
    for (const item of body as unknown[]) walk(item, reads);
  } else if (op === 'Record') {
    for (const item of Object.values(body)) walk(item, reads);
  } else if (Array.isArray(body) && /^[a-zA-Z][a-zA-Z0-9_:]*$/.test(op) && !['getTag', 'hasTag', 'Slot'].includes(op)) {
    // An extension function call (decimal, ip, datetime, ...): its arguments are values.
    for (const item of body as unknown[]) walk(item, reads);
  } else {
    // getTag/hasTag (a tag name may be computed), template slots, or a form this does not know.
    reads.opaque = true;
  }
}

/** The groups an action is in (the schema's action hierarchy). */
function actionGroupsOf(action: string): string[] {
  return Object.entries(actionGroups).filter(([, scopes]) => (scopes as readonly string[]).includes(action)).map(([group]) => group);
}

const ancestries = new Map<string, ReadonlySet<string>>();

/**
 * The action itself and every group it is in, remembered per action of the schema (the groups
 * are fixed: schema.ts). The policy pre-filter asks it on every request (unsatisfied.ts).
 */
export function actionAncestry(action: string): ReadonlySet<string> {
  let ancestry = ancestries.get(action);
  if (!ancestry) {
    ancestry = new Set([action, ...actionGroupsOf(action)]);
    // Actions come from requests; only the schema's are worth remembering.
    if (ancestry.size > 1) ancestries.set(action, ancestry);
  }
  return ancestry;
}

/**
 * The action as the entity Cedar makes of the schema's action declaration: no attributes, its
 * groups as parents. A call without the schema must bring it, or `action in Action::"trading"`
 * would be false (engine.ts, `checkedCall`).
 */
export function actionEntity(action: string): CedarEntity {
  return { uid: { type: 'Action', id: action }, attrs: {}, parents: actionGroupsOf(action).map((group) => ({ type: 'Action', id: group })) };
}

function typeMayMatch(scope: { op: string; entity_type?: string; entity?: unknown }, type: string): boolean {
  if (scope.op === 'is') return scope.entity_type === type;
  if (scope.op === '==') {
    const uid = entityOf(scope.entity);
    return uid === undefined || uid.type === type;
  }
  return true;
}

/**
 * The policy with its action scope made `action` (any action), for requests whose action its scope
 * certainly matches (planFor kept it for that action): then Cedar needs no action entity to decide
 * it. Undefined when the scope names anything but actions, which Cedar must be asked as written.
 */
export function withAnyAction(json: PolicyJson): PolicyJson | undefined {
  const scope = json.action as ActionScope;
  if (scope.op === 'All') return json;
  if (!actionTargets(scope).every((t) => entityOf(t)?.type === 'Action')) return undefined;
  return { ...json, action: { op: 'All' } };
}

type ActionScope = { op: string; entity?: unknown; entities?: unknown[] };

/**
 * What an action scope other than `All` names: the one entity of `==` or `in`, or the list of
 * `in [...]` (the one reading of a scope's targets: planFor, withAnyAction, unsatisfied.ts, engine.ts).
 */
export function actionTargets(scope: ActionScope): unknown[] {
  return scope.op === '==' ? [scope.entity] : (scope.entities ?? [scope.entity]);
}

function actionMayMatch(scope: ActionScope, action: string): boolean {
  if (scope.op === 'All') return true;
  const targets = actionTargets(scope);
  const ancestry = scope.op === '==' ? new Set([action]) : actionAncestry(action);
  return targets.some((t) => {
    const uid = entityOf(t);
    return uid === undefined || uid.type !== 'Action' || ancestry.has(uid.id);
  });
}

/**
 * The plan for requests of one shape, or undefined when the shape is not one the schema knows
 * (such a request goes to Cedar whole, which refuses it).
 */
export function planFor(policies: readonly PolicyFacts[], principalType: string, action: string, resourceType: string): SlicePlan | undefined {
  const appliesTo = actionAppliesTo(action);
  if (!appliesTo?.principal.includes(principalType) || !appliesTo.resource.includes(resourceType)) return undefined;
  const kept = policies.filter((p) => {
    const json = p.json as { principal: { op: string }; action: { op: string }; resource: { op: string } };
    return typeMayMatch(json.principal, principalType) && actionMayMatch(json.action, action) && typeMayMatch(json.resource, resourceType);
  });
  return planOf(kept);
}

/** The plan that keeps exactly `policies`: what they read, together. */
export function planOf(policies: readonly PolicyFacts[]): SlicePlan {
  const reads = noReads();
  for (const p of policies) {
    for (const v of ['principal', 'resource'] as const) addEntityReads(reads[v], p.reads[v]);
    reads.opaque ||= p.reads.opaque;
    p.reads.context.forEach((a) => reads.context.add(a));
    reads.contextWhole ||= p.reads.contextWhole;
    reads.action ||= p.reads.action;
    reads.actionLiterals ||= p.reads.actionLiterals;
    for (const [name, bounds] of p.reads.contextBounds) {
      const all = reads.contextBounds.get(name) ?? { literals: new Set<number>(), paths: new Map<string, string[]>() };
      bounds.literals.forEach((b) => all.literals.add(b));
      bounds.paths.forEach((path, key) => all.paths.set(key, path));
      reads.contextBounds.set(name, all);
    }
    p.reads.contextValues.forEach((a) => reads.contextValues.add(a));
  }
  return { policyIds: policies.map((p) => p.id), reads, bands: bandsOf(reads) };
}

/** The attributes every policy reads only in comparisons with bounds (boundRead); none when one reads the context whole. */
function bandsOf(reads: Reads): Map<string, Band> {
  const bands = new Map<string, Band>();
  if (reads.contextWhole) return bands;
  for (const [name, bounds] of reads.contextBounds) {
    if (!reads.contextValues.has(name)) bands.set(name, { literals: [...bounds.literals].sort((a, b) => a - b), paths: [...bounds.paths.values()] });
  }
  return bands;
}

/**
 * How far a request may be cut: `schema` keeps what the schema requires (Cedar checks the call
 * against it); `checked` keeps only what the policies read, for a request known to conform that
 * Cedar is asked without the schema (engine.ts `checkedCall`).
 */
export type SliceFor = 'schema' | 'checked';

/**
 * The entities a request needs under a plan: the principal and resource, cut as the plan allows
 * (their attributes the policies read, and for `schema` the ones it requires), or undefined when
 * nothing may be cut (an opaque plan, a repeated uid, an Action entity).
 */
export function sliceEntities(plan: SlicePlan, request: CedarRequest, sliceFor: SliceFor = 'schema', byKey = entitiesByUid(request)): CedarEntity[] | undefined {
  if (plan.reads.opaque || !byKey) return undefined;
  const sliced: CedarEntity[] = [];
  // A person approving their own request (`approve`, a User on a User) is one entity, cut to what
  // the policies read of either: Cedar refuses a uid given twice.
  const keys = { principal: uidKey(request.principal), resource: uidKey(request.resource) };
  const same = keys.principal === keys.resource;
  for (const v of same ? (['principal'] as const) : (['principal', 'resource'] as const)) {
    const entity = byKey.get(keys[v]);
    const reads = same ? bothReads(plan.reads.principal, plan.reads.resource) : plan.reads[v];
    const asksIn = reads.inAny || reads.inTargets.size > 0;
    if (!entity || (reads.attrs.size === 0 && !asksIn)) continue;
    const optional = schemaFacts().optional.get(entity.uid.type);
    const attrs: CedarEntity['attrs'] = {};
    for (const [name, value] of Object.entries(entity.attrs)) {
      if (reads.attrs.has(name) || (sliceFor === 'schema' && !optional?.has(name))) attrs[name] = value;
    }
    const parents = asksIn ? ancestors(byKey, entity).filter((p) => reads.inAny || reads.inTargets.has(uidKey(p))) : [];
    sliced.push({ uid: entity.uid, attrs, parents });
  }
  return sliced;
}

/** What the policies read of an entity that is both the principal and the resource. */
function bothReads(a: EntityReads, b: EntityReads): EntityReads {
  const both = emptyReads();
  addEntityReads(both, a);
  addEntityReads(both, b);
  return both;
}

/**
 * The request's entities by uid when the request is plain: its principal, resource, entities and
 * their parents named as `{ type, id }`, no uid twice, no Action entity (the schema's); else
 * undefined (Cedar then gets the request as it is).
 */
export function entitiesByUid(request: CedarRequest): Map<string, CedarEntity> | undefined {
  if (!plainUid(request.principal) || !plainUid(request.resource) || !Array.isArray(request.entities)) return undefined;
  const byKey = new Map<string, CedarEntity>();
  for (const entity of request.entities) {
    if (typeof entity !== 'object' || entity === null) return undefined;
    if (!plainUid(entity.uid) || entity.uid.type === 'Action' || typeof entity.attrs !== 'object' || entity.attrs === null) return undefined;
    if (!Array.isArray(entity.parents) || !entity.parents.every(plainUid)) return undefined;
    const key = uidKey(entity.uid);
    if (byKey.has(key)) return undefined;
    byKey.set(key, entity);
  }
  return byKey;
}

/**
 * The context a request needs under a plan: its attributes the policies read, and those that
 * cannot be left out (required, undeclared, or not certainly of their declared type — Cedar
 * then refuses the request, as it would have). An attribute is left out only when it certainly
 * conforms, so a request the schema refuses is still refused. For a call `checked`, whose whole
 * context is known to conform, only what the policies read.
 */
export function sliceContext(plan: SlicePlan, context: CedarRequest['context'], sliceFor: SliceFor = 'schema'): CedarRequest['context'] {
  if (plan.reads.contextWhole || !isPlainObject(context)) return context;
  const declared = schemaFacts().records.get('RequestContext');
  if (!declared) return context;
  const sliced: CedarRequest['context'] = {};
  let cut = false;
  for (const [name, value] of Object.entries(context)) {
    const attribute = declared.get(name);
    const mayGo = sliceFor === 'checked' || (attribute?.optional && conformsTo(attribute.type, value, 0));
    if (mayGo && !plan.reads.context.has(name)) cut = true;
    else sliced[name] = value;
  }
  return cut ? sliced : context;
}

/**
 * True only when the whole context certainly conforms to the schema's `RequestContext`: every
 * attribute declared and of its type, every required one present. False when unsure (an integer
 * past 2^53, an entity, anything this reading does not know): then Cedar checks it (engine.ts).
 */
export function contextConforms(context: unknown): boolean {
  return isPlainObject(context) && conformsTo('RequestContext', context, 0);
}

/** True only when `value` is certainly of the declared type (String, Long, Bool, Set<...>, or a record type). */
function conformsTo(type: string, value: unknown, depth: number): boolean {
  if (depth > 8) return false;
  if (type === 'String') return typeof value === 'string' && value.isWellFormed();
  if (type === 'Long') return typeof value === 'number' && Number.isSafeInteger(value);
  if (type === 'Bool' || type === 'Boolean') return typeof value === 'boolean';
  const set = /^Set\s*<\s*(.+)\s*>$/.exec(type);
  if (set) {
    if (!Array.isArray(value) || Object.getPrototypeOf(value) !== Array.prototype) return false;
    for (let i = 0; i < value.length; i++) if (!conformsTo(set[1]!.trim(), value[i], depth + 1)) return false;
    return true;
  }
  const record = schemaFacts().records.get(type);
  if (!record || !isPlainObject(value)) return false;
  for (const [name, member] of Object.entries(value)) {
    if (member === undefined) continue;
    const attribute = record.get(name);
    if (!attribute || !conformsTo(attribute.type, member, depth + 1)) return false;
  }
  for (const [name, attribute] of record) if (!attribute.optional && (!Object.hasOwn(value, name) || value[name] === undefined)) return false;
  return true;
}

/** A plain object, as JSON.stringify writes it member by member (no toJSON, no class). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return (proto === Object.prototype || proto === null) && !('toJSON' in value);
}

/** `{ type, id }` with two strings and nothing else (not the `__entity` form, which Cedar also takes). */
function plainUid(uid: unknown): uid is EntityUid {
  if (typeof uid !== 'object' || uid === null) return false;
  const u = uid as Record<string, unknown>;
  return typeof u.type === 'string' && typeof u.id === 'string' && Object.keys(u).length === 2;
}

/** Every ancestor of `entity` through the parents of the request's entities (as Cedar's transitive closure). */
function ancestors(byKey: Map<string, CedarEntity>, entity: CedarEntity): EntityUid[] {
  const found = new Map<string, EntityUid>();
  const pending = [...entity.parents];
  while (pending.length) {
    const parent = pending.pop()!;
    const key = uidKey(parent);
    if (found.has(key)) continue;
    found.set(key, { type: parent.type, id: parent.id });
    pending.push(...(byKey.get(key)?.parents ?? []));
  }
  found.delete(uidKey(entity.uid));
  return [...found.values()];
}
