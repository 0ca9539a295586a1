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
    return { value: parseYaml(text, { uniqueKeys: true, strict: true, prettyErrors: true }), problems: [] };
  } catch (error) {
    const where = error instanceof YAMLParseError && error.linePos ? ` (line ${error.linePos[0].line})` : '';
    return { problems: [{ path: '', message: `${fileName} is not valid YAML${where}: ${(error as Error).message.split('\n')[0]}` }] };
  }
}
