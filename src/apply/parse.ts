import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { Problem } from '../validation.ts';

/**
 * Reads an apply document: JSON, or YAML (a superset of JSON). Duplicate keys are an error in
 * both, so a file never silently means something other than what it shows.
 */
export function parseDocument(text: string, fileName: string): { value?: unknown; problems: Problem[] } {
  if (/\.json$/i.test(fileName)) {
    try {
      return { value: JSON.parse(text), problems: [] };
    } catch (error) {
      return { problems: [{ path: '', message: `${fileName} is not valid JSON: ${(error as Error).message}` }] };
    }
  }
  try {
    const value: unknown = parseYaml(text, { uniqueKeys: true, strict: true, prettyErrors: true });
    // A YAML alias may name a node that holds it (`a: &a [*a]`): the value is then circular, and
    // every walk of the document (validation, the plan) would never end — a problem, never a 5xx.
    const circular = circularPath(value, [], '');
    if (circular !== undefined) return { problems: [{ path: circular, message: `${fileName}: an alias here refers to a node that contains it` }] };
    return { value, problems: [] };
  } catch (error) {
    const where = error instanceof YAMLParseError && error.linePos ? ` (line ${error.linePos[0].line})` : '';
    return { problems: [{ path: '', message: `${fileName} is not valid YAML${where}: ${(error as Error).message.split('\n')[0]}` }] };
  }
}

/** The path of the first value that holds one of its own containers (`ancestors`), or undefined. */
function circularPath(value: unknown, ancestors: object[], path: string): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  if (ancestors.includes(value)) return path;
  ancestors.push(value);
  try {
    const entries = Array.isArray(value) ? value.map((v, i) => [`${path}[${i}]`, v] as const) : Object.entries(value).map(([k, v]) => [path ? `${path}.${k}` : k, v] as const);
    for (const [at, child] of entries) {
      const found = circularPath(child, ancestors, at);
      if (found !== undefined) return found;
    }
    return undefined;
  } finally {
    ancestors.pop();
  }
}
