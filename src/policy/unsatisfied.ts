import type { PolicyJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { CedarEntity, CedarRequest, EntityUid } from './engine.ts';
import { actionAncestry, actionTargets, contextHoldsEntities, isPlainObject, uidKey } from './slicing.ts';

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

/** A part of a policy read once: told against a request's view each time it is asked. */
type Compiled = (view: View) => Value | undefined;
type Part = (view: View) => boolean | undefined;

/**
 * Each policy's parts, read from its JSON once (the JSON of a loaded policy set does not change):
 * a request then walks closures, not the JSON's members and operator names again.
 */
const compiledPolicies = new WeakMap<PolicyJson, Part[]>();

/** True when Cedar certainly finds `policy` unsatisfied, without an error, for the request. */
export function unsatisfied(policy: PolicyJson, view: View): boolean {
  let parts = compiledPolicies.get(policy);
  if (!parts) compiledPolicies.set(policy, (parts = compilePolicy(policy)));
  for (const part of parts) {
    const value = part(view);
    if (value === false) return true;
    if (value !== true) return false;
  }
  return false;
}

/** The parts in the order Cedar evaluates them: scope (principal, action, resource), then each condition. */
function compilePolicy(policy: PolicyJson): Part[] {
  const principal = policy.principal as Scope;
  const resource = policy.resource as Scope;
  const action = compileActionScope(policy.action as Scope);
  return [
    (view) => scope(principal, 'principal', view),
    (view) => action(view.request.action),
    (view) => scope(resource, 'resource', view),
    ...policy.conditions.map((clause): Part => {
      const body = compile(clause.body);
      const when = clause.kind === 'when';
      return (view) => {
        const value = body(view);
        return typeof value === 'boolean' ? (when ? value : !value) : unknown;
      };
    }),
  ];
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

/** The action scope: `==` one action, `in` an action (itself or a group holding it) or a set of them. */
function compileActionScope(constraint: Scope): (action: string) => boolean | undefined {
  if (constraint.op === 'All') return () => true;
  const targets = actionTargets(constraint).map(uidOf);
  if (targets.some((t) => t === undefined || t.type !== 'Action')) return () => unknown;
  const ids = targets.map((t) => t!.id);
  if (constraint.op !== 'in') return (action) => ids.includes(action);
  return (action) => {
    const ancestry = actionAncestry(action);
    return ids.some((id) => ancestry.has(id));
  };
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

const cannotTell: Compiled = () => unknown;

/** An expression read once: a closure that tells its value for a request's view, or cannot tell. */
function compile(expr: unknown): Compiled {
  if (!isPlainObject(expr)) return cannotTell;
  const keys = Object.keys(expr);
  if (keys.length !== 1) return cannotTell;
  const op = keys[0]!;
  const body = (expr as Node)[op]!;
  if (op === 'Value') {
    const value = entityValue(body);
    return () => value;
  }
  // Every other operator's body is an object of operands.
  if (!isPlainObject(body)) return op === 'Var' ? variable(body) : cannotTell;
  switch (op) {
    case '.': {
      const left = compile(body.left);
      const attr = body.attr;
      return (view) => attribute(left(view), attr, view);
    }
    case 'has': {
      const left = compile(body.left);
      const attr = body.attr;
      return (view) => has(left(view), attr, view);
    }
    case '==':
    case '!=': {
      const left = compile(body.left);
      const right = compile(body.right);
      const negate = op === '!=';
      return (view) => {
        const equal = equals(left(view), right(view));
        return equal === unknown ? unknown : negate ? !equal : equal;
      };
    }
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const left = compile(body.left);
      const right = compile(body.right);
      const compare = comparisons[op];
      return (view) => {
        const l = left(view);
        const r = right(view);
        if (typeof l !== 'number' || typeof r !== 'number') return unknown;
        return compare(l, r);
      };
    }
    case '!': {
      const arg = compile(body.arg);
      return (view) => {
        const value = arg(view);
        return typeof value === 'boolean' ? !value : unknown;
      };
    }
    case '&&':
    case '||': {
      const left = compile(body.left);
      const right = compile(body.right);
      const and = op === '&&';
      return (view) => {
        const l = left(view);
        if (typeof l !== 'boolean') return unknown;
        if (and ? !l : l) return l;
        const r = right(view);
        return typeof r === 'boolean' ? r : unknown;
      };
    }
    case 'is': {
      const left = compile(body.left);
      const type = body.entity_type;
      const within = body.in === undefined ? undefined : compileEntityLiterals(body.in);
      return (view) => {
        const l = left(view);
        if (!isEntity(l) || typeof type !== 'string') return unknown;
        if (l.entity.type !== type) return false;
        return within === undefined ? true : membership(l, within, view);
      };
    }
    case 'in': {
      const left = compile(body.left);
      const right = compileEntityLiterals(body.right);
      return (view) => membership(left(view), right, view);
    }
    case 'contains': {
      const left = compile(body.left);
      const right = compile(body.right);
      return (view) => {
        const l = left(view);
        const r = right(view);
        if (!isSet(l) || !isPrimitive(r)) return unknown;
        const elements = l.set.map(literalPrimitive);
        if (elements.some((e) => e === unknown)) return unknown;
        return elements.some((e) => e === r);
      };
    }
    default:
      return cannotTell;
  }
}

const comparisons = {
  '<': (l: number, r: number) => l < r,
  '<=': (l: number, r: number) => l <= r,
  '>': (l: number, r: number) => l > r,
  '>=': (l: number, r: number) => l >= r,
};

/** `principal`, `resource` or `context`. */
function variable(name: unknown): Compiled {
  if (name === 'principal' || name === 'resource') return (view) => ({ entity: view.request[name] });
  if (name === 'context') return (view) => (contextHoldsEntities() ? unknown : record(view.request.context));
  return cannotTell;
}

/** `left in right`, where left is the principal or resource and right an entity literal or a set literal of them. */
function membership(left: Value | undefined, right: (view: View) => EntityUid[] | undefined, view: View): boolean | undefined {
  if (!isEntity(left) || !(sameUid(left.entity, view.request.principal) || sameUid(left.entity, view.request.resource))) return unknown;
  const targets = right(view);
  return targets ? isIn(left.entity, targets, view) : unknown;
}

/** The entities of `Type::"id"` or `[Type::"a", ...]` (each element an entity, else cannot tell). */
function compileEntityLiterals(expr: unknown): (view: View) => EntityUid[] | undefined {
  if (isPlainObject(expr) && Array.isArray(expr.Set)) {
    const elements = expr.Set.map(compile);
    return (view) => {
      const values = elements.map((element) => element(view));
      return values.every(isEntity) ? values.map((v) => (v as { entity: EntityUid }).entity) : undefined;
    };
  }
  const value = compile(expr);
  return (view) => {
    const v = value(view);
    return isEntity(v) ? [v.entity] : undefined;
  };
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
