import type { PolicyJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { CedarEntity, CedarRequest, EntityUid } from './engine.ts';
import { contextHoldsEntities } from './slicing.ts';
import { actionGroups } from './schema.ts';

/**
 * Which policies a request cannot satisfy, told without Cedar, so Cedar is not asked to evaluate
 * them (each costs some microseconds at the wasm boundary). A policy is left out only when the
 * part of its condition Cedar evaluates first — scope, then each `when` and `unless` in order,
 * joined by `&&` — is certainly true up to a part that is certainly false: then Cedar finds it
 * unsatisfied without evaluating further, so it can neither determine the decision nor err. Only
 * a small part of Cedar is read here (literals, attributes of the principal, resource and context,
 * `has`, `==`, `!=`, comparisons of integers, `!`, `&&`, `||`, `is`, `in` of the principal or
 * resource, `contains` of a set of primitives); anything else is "cannot tell", and the policy stays.
 *
 * Values are read as Cedar reads them only when the request is one Cedar takes at all: a request
 * whose entities or context do not conform to the schema is refused whole, before any policy, so
 * which policies are asked makes no difference to it.
 */

type Value = string | number | boolean | { entity: EntityUid } | { record: Record<string, unknown> } | { set: unknown[] };
/** Cannot tell: the value is not one this reads, or Cedar may err. */
const unknown = undefined;

interface View {
  request: CedarRequest;
  byKey: Map<string, CedarEntity>;
  /** Each entity's parents, in `{ type, id }` form (Cedar takes `{ __entity: ... }` too). */
  parents: Map<string, EntityUid[]>;
  ancestors: Map<string, Set<string>>;
}

const uidKey = (uid: EntityUid) => `${uid.type}::${JSON.stringify(uid.id)}`;

/**
 * An index of the request's entities, for `unsatisfied`; undefined when anything in it is not in
 * the plain form read here (then no policy is left out).
 */
export function requestView(request: CedarRequest): View | undefined {
  if (!isUid(request.principal) || !isUid(request.resource) || !Array.isArray(request.entities)) return undefined;
  const byKey = new Map<string, CedarEntity>();
  const parents = new Map<string, EntityUid[]>();
  for (const entity of request.entities) {
    if (!isPlainObject(entity) || !isUid(entity.uid) || !isPlainObject(entity.attrs) || !Array.isArray(entity.parents)) return undefined;
    const key = uidKey(entity.uid);
    const uids = entity.parents.map(uidOf);
    if (byKey.has(key) || uids.some((u) => u === undefined)) return undefined;
    byKey.set(key, entity);
    parents.set(key, uids as EntityUid[]);
  }
  return { request, byKey, parents, ancestors: new Map() };
}

/** True when Cedar certainly finds `policy` unsatisfied, without an error, for the request. */
export function unsatisfied(policy: PolicyJson, view: View): boolean {
  const parts: (() => boolean | undefined)[] = [
    () => scope(policy.principal as Scope, 'principal', view),
    () => actionScope(policy.action as Scope, view.request.action),
    () => scope(policy.resource as Scope, 'resource', view),
    ...policy.conditions.map((clause) => () => {
      const value = evaluate(clause.body, view);
      return typeof value === 'boolean' ? (clause.kind === 'when' ? value : !value) : unknown;
    }),
  ];
  for (const part of parts) {
    const value = part();
    if (value === false) return true;
    if (value !== true) return false;
  }
  return false;
}

interface Scope {
  op: string;
  entity?: unknown;
  entities?: unknown[];
  entity_type?: string;
  in?: { entity?: unknown };
}

function scope(constraint: Scope, v: 'principal' | 'resource', view: View): boolean | undefined {
  const self = view.request[v];
  switch (constraint.op) {
    case 'All':
      return true;
    case '==': {
      const uid = uidOf(constraint.entity);
      return uid ? sameUid(uid, self) : unknown;
    }
    case 'in': {
      const uid = uidOf(constraint.entity);
      return uid ? isIn(self, [uid], view) : unknown;
    }
    case 'is': {
      if (constraint.entity_type !== self.type) return false;
      if (constraint.in === undefined) return true;
      const uid = uidOf(constraint.in.entity);
      return uid ? isIn(self, [uid], view) : unknown;
    }
    default:
      return unknown;
  }
}

function actionScope(constraint: Scope, action: string): boolean | undefined {
  if (constraint.op === 'All') return true;
  const targets = (constraint.op === '==' ? [constraint.entity] : (constraint.entities ?? [constraint.entity])).map(uidOf);
  if (targets.some((t) => t === undefined || t.type !== 'Action')) return unknown;
  const ancestry = new Set([action, ...(constraint.op === 'in' ? Object.entries(actionGroups).filter(([, s]) => (s as readonly string[]).includes(action)).map(([g]) => g) : [])]);
  return targets.some((t) => ancestry.has(t!.id));
}

/** `self in targets`, for the principal or resource: equal to one, or one is an ancestor (through the request's entities). */
function isIn(self: EntityUid, targets: EntityUid[], view: View): boolean {
  const key = uidKey(self);
  let ancestors = view.ancestors.get(key);
  if (!ancestors) {
    ancestors = new Set();
    const pending = [...(view.parents.get(key) ?? [])];
    while (pending.length) {
      const k = uidKey(pending.pop()!);
      if (ancestors.has(k)) continue;
      ancestors.add(k);
      pending.push(...(view.parents.get(k) ?? []));
    }
    view.ancestors.set(key, ancestors);
  }
  return targets.some((t) => sameUid(t, self) || ancestors.has(uidKey(t)));
}

type Node = Record<string, Record<string, unknown>>;

function evaluate(expr: unknown, view: View): Value | undefined {
  if (!isPlainObject(expr)) return unknown;
  const keys = Object.keys(expr);
  if (keys.length !== 1) return unknown;
  const op = keys[0]!;
  const body = (expr as Node)[op]!;
  switch (op) {
    case 'Value':
      return entityValue(body);
    case 'Var': {
      const name = body as unknown as string;
      if (name === 'principal' || name === 'resource') return { entity: view.request[name] };
      if (name === 'context') return contextHoldsEntities() ? unknown : record(view.request.context);
      return unknown;
    }
    case '.':
      return attribute(evaluate(body.left, view), body.attr, view);
    case 'has':
      return has(evaluate(body.left, view), body.attr, view);
    case '==':
    case '!=': {
      const equal = equals(evaluate(body.left, view), evaluate(body.right, view));
      return equal === unknown ? unknown : op === '==' ? equal : !equal;
    }
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const left = evaluate(body.left, view);
      const right = evaluate(body.right, view);
      if (typeof left !== 'number' || typeof right !== 'number') return unknown;
      return op === '<' ? left < right : op === '<=' ? left <= right : op === '>' ? left > right : left >= right;
    }
    case '!': {
      const arg = evaluate(body.arg, view);
      return typeof arg === 'boolean' ? !arg : unknown;
    }
    case '&&':
    case '||': {
      const left = evaluate(body.left, view);
      if (typeof left !== 'boolean') return unknown;
      if (op === '&&' ? !left : left) return left;
      const right = evaluate(body.right, view);
      return typeof right === 'boolean' ? right : unknown;
    }
    case 'is': {
      const left = evaluate(body.left, view);
      if (!isEntity(left) || typeof body.entity_type !== 'string') return unknown;
      if (left.entity.type !== body.entity_type) return false;
      return body.in === undefined ? true : membership(left, body.in, view);
    }
    case 'in':
      return membership(evaluate(body.left, view), body.right, view);
    case 'contains': {
      const left = evaluate(body.left, view);
      const right = evaluate(body.right, view);
      if (!isSet(left) || !isPrimitive(right)) return unknown;
      const elements = left.set.map(literalPrimitive);
      if (elements.some((e) => e === unknown)) return unknown;
      return elements.some((e) => e === right);
    }
    default:
      return unknown;
  }
}

/** `left in right`, where left is the principal or resource and right an entity literal or a set literal of them. */
function membership(left: Value | undefined, right: unknown, view: View): boolean | undefined {
  if (!isEntity(left) || !(sameUid(left.entity, view.request.principal) || sameUid(left.entity, view.request.resource))) return unknown;
  const targets = entityLiterals(right, view);
  return targets ? isIn(left.entity, targets, view) : unknown;
}

/** The entities of `Type::"id"` or `[Type::"a", ...]` (each element an entity, else cannot tell). */
function entityLiterals(expr: unknown, view: View): EntityUid[] | undefined {
  if (isPlainObject(expr) && Array.isArray(expr.Set)) {
    const values = expr.Set.map((element) => evaluate(element, view));
    return values.every(isEntity) ? values.map((v) => (v as { entity: EntityUid }).entity) : undefined;
  }
  const value = evaluate(expr, view);
  return isEntity(value) ? [value.entity] : undefined;
}

function attribute(left: Value | undefined, attr: unknown, view: View): Value | undefined {
  if (typeof attr !== 'string') return unknown;
  if (isEntity(left)) {
    const entity = readableEntity(left.entity, view);
    if (!entity || !Object.hasOwn(entity.attrs, attr)) return unknown; // Cedar errs
    return entityValue(entity.attrs[attr]);
  }
  if (isRecord(left)) {
    if (!Object.hasOwn(left.record, attr) || left.record[attr] === undefined) return unknown; // Cedar errs
    return contextValue(left.record[attr]);
  }
  return unknown;
}

function has(left: Value | undefined, attr: unknown, view: View): boolean | undefined {
  if (typeof attr !== 'string') return unknown;
  if (isEntity(left)) {
    const entity = readableEntity(left.entity, view);
    return entity ? Object.hasOwn(entity.attrs, attr) && entity.attrs[attr] !== undefined : unknown;
  }
  if (isRecord(left)) return Object.hasOwn(left.record, attr) && left.record[attr] !== undefined;
  return unknown;
}

/** The principal's or resource's entity, when the request carries it. */
function readableEntity(uid: EntityUid, view: View): CedarEntity | undefined {
  if (!sameUid(uid, view.request.principal) && !sameUid(uid, view.request.resource)) return undefined;
  return view.byKey.get(uidKey(uid));
}

/**
 * A value of an entity attribute, or a policy's literal: primitives, sets and entity references
 * (records are not read).
 */
function entityValue(raw: unknown): Value | undefined {
  if (isPlainObject(raw)) {
    const uid = '__entity' in raw ? uidOf(raw) : undefined;
    return uid ? { entity: uid } : unknown;
  }
  if (Array.isArray(raw)) return { set: raw };
  return literalPrimitive(raw);
}

/** A value of the context: primitives, sets and records (the schema lets no entity into it, see `contextHoldsEntities`). */
function contextValue(raw: unknown): Value | undefined {
  if (Array.isArray(raw)) return { set: raw };
  if (isPlainObject(raw)) return '__entity' in raw || '__extn' in raw || '__expr' in raw ? unknown : { record: raw };
  return literalPrimitive(raw);
}

function record(raw: unknown): Value | undefined {
  return isPlainObject(raw) ? { record: raw } : unknown;
}

/** A string, a boolean, or an integer JavaScript holds exactly (Cedar's Long); else cannot tell. */
function literalPrimitive(raw: unknown): string | number | boolean | undefined {
  if (typeof raw === 'string' || typeof raw === 'boolean') return raw;
  if (typeof raw === 'number' && Number.isSafeInteger(raw)) return raw;
  return unknown;
}

function equals(left: Value | undefined, right: Value | undefined): boolean | undefined {
  if (isPrimitive(left) && isPrimitive(right)) return left === right; // values of two types are never equal
  if (isEntity(left) && isEntity(right)) return sameUid(left.entity, right.entity);
  return unknown;
}

function isPrimitive(value: Value | undefined): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}
function isEntity(value: Value | undefined): value is { entity: EntityUid } {
  return typeof value === 'object' && 'entity' in value;
}
function isRecord(value: Value | undefined): value is { record: Record<string, unknown> } {
  return typeof value === 'object' && 'record' in value;
}
function isSet(value: Value | undefined): value is { set: unknown[] } {
  return typeof value === 'object' && 'set' in value;
}

function uidOf(value: unknown): EntityUid | undefined {
  if (!isPlainObject(value)) return undefined;
  const inner = '__entity' in value ? value.__entity : value;
  return isUid(inner) ? { type: inner.type, id: inner.id } : undefined;
}

function isUid(value: unknown): value is EntityUid {
  return isPlainObject(value) && typeof value.type === 'string' && typeof value.id === 'string' && Object.keys(value).length === 2;
}

function sameUid(a: EntityUid, b: EntityUid): boolean {
  return a.type === b.type && a.id === b.id;
}

/** A plain object, as JSON.stringify writes it member by member (no toJSON, no class). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return (proto === Object.prototype || proto === null) && !('toJSON' in value);
}
