import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { sharedFormats, type DetailFormat, type DetailType, type DetailVocabulary, type JsonSchema } from './common.ts';

/**
 * The registered types' JSON Schemas, compiled with Ajv (draft 2020-12) once, when the registry is
 * built, and the errors Ajv reports put in the words Clearance has always used
 * ("authorization_details[0].side must be one of buy, sell"): the path as the client wrote it and
 * the problem in plain words, never Ajv's own text.
 *
 * Beyond standard JSON Schema the schemas use three keywords, all registered here, and harmless to
 * any other validator (JSON Schema ignores unknown keywords):
 * - `format` names are assertions (Ajv validates formats; the names are Clearance's: `iso4217`,
 *   `lei`, `legal-name`, `iban`, …, each with its problem sentence);
 * - `x-declared: "instrument_class"`: one of the instrument classes the entity model declares, which
 *   change at run time, so they are read from the validation context (Ajv's `passContext`), per call;
 * - `x-message`: the sentence for an `anyOf` that fails as a whole (an amount is a string or a number).
 * `discriminator` (OpenAPI's, which Ajv supports) picks a `oneOf` branch by a tag property, so that
 * the error is the chosen branch's, not every branch's.
 */
export interface CompiledDetailType {
  type: DetailType;
  /** Validates an entry; `this` is the vocabulary (passContext). */
  validate: ValidateFunction;
}

/** The compiled validators of the given types, and every format they use. */
export function compileDetailTypes(types: readonly DetailType[]): { compiled: Map<string, CompiledDetailType>; formats: Map<string, DetailFormat> } {
  const formats = new Map<string, DetailFormat>(Object.entries(sharedFormats));
  for (const t of types) for (const [name, problem] of Object.entries(t.formats ?? {})) formats.set(name, problem);
  const ajv = new Ajv2020({
    // The first problem is the answer (and the cheapest to find).
    allErrors: false,
    // Errors carry the offending value and its schema, for the plain-words translation.
    verbose: true,
    passContext: true,
    discriminator: true,
    strict: true,
    // Amounts and names are JSON values as sent; nothing is coerced, defaulted or removed.
    coerceTypes: false,
    useDefaults: false,
    removeAdditional: false,
    validateFormats: true,
  });
  for (const [name, problem] of formats) ajv.addFormat(name, { type: 'string', validate: (value: string) => problem(value) === undefined });
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
  ajv.addKeyword({
    keyword: 'x-declared',
    type: 'string',
    schemaType: 'string',
    errors: true,
    validate: function declared(this: DetailVocabulary | undefined, kind: string, value: string): boolean {
      // Without a vocabulary nothing is declared: fail closed.
      return kind === 'instrument_class' && this?.instrumentClasses?.has(value) === true;
    },
  });
  const compiled = new Map<string, CompiledDetailType>();
  for (const t of types) compiled.set(t.type, { type: t, validate: ajv.compile(t.schema) });
  return { compiled, formats };
}

/**
 * The first error Ajv reported for an entry, as "<path> <problem>" (`path` the entry's, e.g.
 * `authorization_details[0]`). With allErrors off, Ajv stops at the first failing keyword; a failing
 * `anyOf` reports its branches' errors first and its own last, so the last error is the one to word.
 */
export function describeError(errors: readonly ErrorObject[], path: string, formats: ReadonlyMap<string, DetailFormat>): string {
  const error = errors.at(-1);
  if (!error) return `${path} is malformed`;
  const at = path + pointerPath(error.instancePath);
  const params = error.params as Record<string, unknown>;
  const schema = error.parentSchema as JsonSchema | undefined;
  switch (error.keyword) {
    case 'additionalProperties':
      return `${at}.${fieldName(params.additionalProperty)} is not a field of this type`;
    case 'unevaluatedProperties':
      return `${at}.${fieldName(params.unevaluatedProperty)} is not a field of this type`;
    case 'required':
      return `${at}.${fieldName(params.missingProperty)} is required`;
    case 'type':
      return `${at} ${typeProblem(String(params.type))}`;
    case 'minLength':
      return `${at} must be a non-empty string`;
    case 'maxLength':
      return `${at} is too long`;
    case 'enum':
      return `${at} must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'const':
      return `${at} must be ${String(params.allowedValue)}`;
    case 'pattern':
      return `${at} is malformed`;
    case 'format': {
      const problem = formats.get(String(params.format))?.(String(error.data));
      return `${at} ${problem ?? 'is malformed'}`;
    }
    case 'minItems':
      return `${at} must have at least ${String(params.limit)} items`;
    case 'maxItems':
      return `${at} has too many items`;
    case 'uniqueItems':
      return `${at} lists an item twice`;
    case 'minProperties':
    case 'maxProperties':
      return `${at} ${typeof schema?.['x-message'] === 'string' ? schema['x-message'] : 'has the wrong number of fields'}`;
    case 'x-declared':
      return `${at} ${JSON.stringify(error.data)} is not a declared instrument class`;
    case 'discriminator': {
      const tag = String(params.tag);
      const branches = ((schema?.oneOf as JsonSchema[] | undefined) ?? []).map((b) => (b.properties as Record<string, JsonSchema>)[tag]?.const);
      return params.error === 'tag' && (error.data as Record<string, unknown> | null)?.[tag] === undefined ? `${at}.${tag} is required` : `${at}.${tag} must be one of ${branches.join(', ')}`;
    }
    default:
      // anyOf, oneOf, not, and the numeric bounds of an amount: the schema's own sentence.
      return `${at} ${typeof schema?.['x-message'] === 'string' ? schema['x-message'] : 'is malformed'}`;
  }
}

/** "/instrument/class" → ".instrument.class"; "/actions/1" → ".actions[1]" (RFC 6901 unescaped). */
function pointerPath(pointer: string): string {
  if (pointer === '') return '';
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((token) => (/^(0|[1-9]\d*)$/.test(token) ? `[${token}]` : `.${fieldName(token)}`))
    .join('');
}

/** A field name a client sent, shown as given but bounded (it is echoed in an error). */
function fieldName(name: unknown): string {
  return String(name).slice(0, 64);
}

function typeProblem(type: string): string {
  if (type === 'string') return 'must be a non-empty string';
  if (type === 'object') return 'must be an object';
  if (type === 'array') return 'must be an array';
  return `must be a ${type.replace(/,/g, ' or ')}`;
}
