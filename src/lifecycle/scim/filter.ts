import { parse, Tester, type Compare, type Filter } from 'scim2-parse-filter';
import { hasControlCharacter } from '../../parameters.ts';
import { badRequest } from './errors.ts';
import { findAttribute, type AttributeDefinition, type SchemaDefinition } from './schemas.ts';

/**
 * SCIM filters (RFC 7644 §3.4.2.2), parsed by the field's library (scim2-parse-filter: the whole
 * ABNF of §3.4.2.2 — every operator, `and`, `or`, `not`, grouping, value paths such as
 * `emails[type eq "work"]`), never by hand. Clearance adds what the library leaves to the
 * service provider:
 * - every attribute named must exist in the resource's schemas, or the answer is 400
 *   invalidFilter (§3.4.2.2: "the filter is invalid");
 * - comparisons follow the attribute's definition: a string that is not caseExact compares
 *   without regard to case (§3.4.2.2 "eq ... caseExact"), a dateTime by the instant it names.
 */
export interface ParsedFilter {
  /** The library's syntax tree. */
  tree: Filter;
  /** Whether a resource (as SCIM shows it) matches. */
  matches(resource: Record<string, unknown>): boolean;
}

/** Longest filter read: a provisioning client's filters are a few conditions long. */
export const maxFilterLength = 2048;

/** Parses `text` for resources of `schemas` (the core schema first, then its extensions); 400 invalidFilter when it is not a valid filter over them. */
export function parseFilter(text: string, schemas: readonly SchemaDefinition[]): ParsedFilter {
  if (text.length > maxFilterLength) throw badRequest('invalidFilter', `the filter is longer than ${maxFilterLength} characters`);
  let tree: Filter;
  try {
    tree = parse(text);
  } catch {
    // The library's message quotes the input; the answer need not.
    throw badRequest('invalidFilter', 'the filter is not valid SCIM filter syntax (RFC 7644 §3.4.2.2)');
  }
  checkAttributes(tree, schemas, '');
  const tester = new SchemaTester(schemas);
  return { tree, matches: (resource) => tester.test(resource, tree) };
}

const join = (prefix: string, path: string) => (prefix ? `${prefix}.${path}` : path);

/** Every attribute the filter names exists; a complex one is compared only through a sub-attribute or `pr`. */
function checkAttributes(f: Filter, schemas: readonly SchemaDefinition[], prefix: string): void {
  switch (f.op) {
    case 'and':
    case 'or':
      for (const inner of (f as { filters: Filter[] }).filters) checkAttributes(inner, schemas, prefix);
      return;
    case 'not':
      return checkAttributes((f as { filter: Filter }).filter, schemas, prefix);
    case '[]': {
      const valuePath = f as { attrPath: string; valFilter: Filter };
      const attribute = known(schemas, join(prefix, valuePath.attrPath));
      if (attribute.type !== 'complex') throw badRequest('invalidFilter', `${valuePath.attrPath} has no sub-attributes to filter on`);
      return checkAttributes(valuePath.valFilter, schemas, join(prefix, valuePath.attrPath));
    }
    default: {
      const compare = f as Compare | { op: 'pr'; attrPath: string };
      const attribute = known(schemas, join(prefix, compare.attrPath));
      if (compare.op !== 'pr' && attribute.type === 'complex' && !attribute.multiValued) {
        throw badRequest('invalidFilter', `${compare.attrPath} is complex: compare one of its sub-attributes`);
      }
      if (attribute.returned === 'never') throw badRequest('invalidFilter', `${compare.attrPath} cannot be filtered on`);
      // No control character reaches a query (PostgreSQL refuses a NUL in text) or a comparison,
      // whichever way the filter reached us (the query string is checked for them too).
      const value = (compare as Partial<Compare>).compValue;
      if (typeof value === 'string' && hasControlCharacter(value)) throw badRequest('invalidFilter', `the value compared with ${compare.attrPath} holds a control character`);
    }
  }
}

function known(schemas: readonly SchemaDefinition[], path: string): AttributeDefinition {
  const attribute = findAttribute(schemas, path);
  if (!attribute) throw badRequest('invalidFilter', `unknown attribute in the filter: ${path.slice(0, 200)}`);
  return attribute;
}

/**
 * The library's evaluator with the schema's comparison rules: it remembers which attribute a
 * comparison is about (the value path's prefix included) and folds case or reads instants before
 * the library's own operator runs.
 */
class SchemaTester extends Tester {
  readonly #schemas: readonly SchemaDefinition[];
  #prefix = '';
  #attribute: AttributeDefinition | undefined;

  constructor(schemas: readonly SchemaDefinition[]) {
    super();
    this.#schemas = schemas;
  }

  override test(r: unknown, f: Filter): boolean {
    if (f.op === '[]') {
      const saved = this.#prefix;
      this.#prefix = join(saved, (f as { attrPath: string }).attrPath);
      try {
        return super.test(r, f);
      } finally {
        this.#prefix = saved;
      }
    }
    if (f.op !== 'and' && f.op !== 'or' && f.op !== 'not') {
      this.#attribute = findAttribute(this.#schemas, join(this.#prefix, (f as Compare).attrPath));
    }
    return super.test(r, f);
  }

  // A multi-valued attribute of simple values (the institution extension's desks) reaches the
  // operator as its array: the library descends into arrays of objects only. It matches when one
  // of its values does (RFC 7644 §3.4.2.2, multi-valued attributes).

  /** Both sides as the attribute compares them. */
  #fold(r: unknown, v: Compare['compValue']): [unknown, Compare['compValue']] {
    const attribute = this.#attribute;
    if (attribute?.type === 'dateTime' && typeof r === 'string' && typeof v === 'string') {
      const [a, b] = [Date.parse(r), Date.parse(v)];
      return Number.isNaN(a) || Number.isNaN(b) ? [r, v] : [a, b];
    }
    if (attribute && !attribute.caseExact && typeof r === 'string' && typeof v === 'string') return [r.toLowerCase(), v.toLowerCase()];
    return [r, v];
  }

  override eq(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.eq(item, v)) : super.eq(...this.#fold(r, v));
  }
  override ne(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.ne(item, v)) : super.ne(...this.#fold(r, v));
  }
  override co(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.co(item, v)) : super.co(...this.#fold(r, v));
  }
  override sw(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.sw(item, v)) : super.sw(...this.#fold(r, v));
  }
  override ew(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.ew(item, v)) : super.ew(...this.#fold(r, v));
  }
  override gt(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.gt(item, v)) : super.gt(...this.#fold(r, v));
  }
  override ge(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.ge(item, v)) : super.ge(...this.#fold(r, v));
  }
  override lt(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.lt(item, v)) : super.lt(...this.#fold(r, v));
  }
  override le(r: unknown, v: Compare['compValue']): boolean {
    return Array.isArray(r) ? r.some((item) => this.le(item, v)) : super.le(...this.#fold(r, v));
  }
}

/**
 * The equalities a filter requires of every match (`userName eq "x"` alone or ANDed with others),
 * by lowercased attribute name: what the store narrows its read with before the filter decides.
 */
export function requiredEqualities(f: Filter): Map<string, string | number | boolean | null> {
  const found = new Map<string, string | number | boolean | null>();
  const visit = (g: Filter) => {
    if (g.op === 'and') for (const inner of (g as { filters: Filter[] }).filters) visit(inner);
    else if (g.op === 'eq') found.set((g as Compare).attrPath.toLowerCase(), (g as Compare).compValue);
  };
  visit(f);
  return found;
}
