import type { CertificateProfile } from './profiles.ts';

/** A SAN entry: `dns`, `uri` or `email` with its value. */
export interface SanEntry {
  type: 'dns' | 'uri' | 'email';
  value: string;
}

export class NameError extends Error {
  override name = 'NameError';
}

/**
 * A holder id the CA puts into names: letters, digits and `._-`, 1 to 128. Nothing that has a
 * meaning in a DN (`,+="\<>;`), a URI (`/?#%`) or a DNS name beyond a label, so a holder cannot
 * write a second name into a template.
 */
const holderPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkHolder(holder: string): void {
  if (!holderPattern.test(holder)) throw new NameError(`holder "${holder.slice(0, 80)}" cannot be written into a certificate name (letters, digits and ._- only, 1 to 128)`);
}

/** The subject DN and SANs a profile gives `holder`, checked against the profile's name constraints. */
export function renderNames(profile: CertificateProfile, holder: string): { subject: string; sans: SanEntry[] } {
  checkHolder(holder);
  const fill = (template: string) => template.replaceAll('{holder}', holder);
  const sans: SanEntry[] = [];
  for (const type of ['dns', 'uri', 'email'] as const) {
    for (const template of profile.san[type] ?? []) sans.push({ type, value: fill(template) });
  }
  for (const entry of sans) {
    checkForm(entry);
    if (profile.name_constraints && !permitted(profile.name_constraints, entry)) {
      throw new NameError(`${entry.type} name ${entry.value} is outside profile ${profile.name}'s name constraints`);
    }
  }
  return { subject: fill(profile.subject), sans };
}

function checkForm(entry: SanEntry): void {
  switch (entry.type) {
    case 'dns':
      if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(entry.value)) throw new NameError(`"${entry.value}" is not a DNS name`);
      return;
    case 'uri':
      if (!URL.canParse(entry.value) || !/^[a-z][a-z0-9+.-]*:/i.test(entry.value)) throw new NameError(`"${entry.value}" is not an absolute URI`);
      return;
    case 'email':
      if (!/^[^@\s]{1,64}@[a-z0-9.-]{1,253}$/i.test(entry.value)) throw new NameError(`"${entry.value}" is not an email address`);
      return;
  }
}

/**
 * RFC 5280 §4.2.1.10 semantics for permitted subtrees: a DNS constraint `example.com` permits it
 * and its subdomains, `.example.com` only subdomains; a URI constraint applies to the URI's host
 * (uriPermitted below); an email constraint is a domain (`example.com` exactly, `.example.com` its
 * subdomains) or one whole address.
 */
export function permitted(constraints: NonNullable<CertificateProfile['name_constraints']>, entry: SanEntry): boolean {
  const allowed = constraints[entry.type];
  if (allowed === undefined) return true;
  const value = entry.value.toLowerCase();
  return allowed.some((c) => {
    const constraint = c.toLowerCase();
    switch (entry.type) {
      case 'dns':
        return constraint.startsWith('.') ? value.endsWith(constraint) : value === constraint || value.endsWith(`.${constraint}`);
      case 'uri':
        return uriPermitted(c, entry.value);
      case 'email': {
        if (constraint.includes('@')) return value === constraint;
        const domain = value.slice(value.lastIndexOf('@') + 1);
        return constraint.startsWith('.') ? domain.endsWith(constraint) : domain === constraint;
      }
    }
  });
}

/** `scheme://authority path`, with no query or fragment; the authority and path as written. */
const hierarchicalUri = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)$/i;

/**
 * Whether URI `value` is inside URI constraint `constraint`. RFC 5280 §4.2.1.10: for a URI the
 * constraint applies to the host part, and names a host (`broker.example`: that host exactly) or a
 * domain (`.broker.example`: any host below it). A constraint may also be written as a URI
 * (`spiffe://broker.example/agent/`): the same scheme and host (and port), and, when it has a path,
 * whole path segments under that path. Never a plain text prefix: `spiffe://broker.example`
 * would permit `spiffe://broker.example.evil/…`. A URN constraint (`urn:example:signer`) permits
 * whole colon-separated parts under it. A URI with userinfo, a query, a fragment or a dot segment
 * is outside every host subtree: none of these is a name a profile means to give.
 */
export function uriPermitted(constraint: string, value: string): boolean {
  if (!/^[a-z][a-z0-9+.-]*:/i.test(constraint)) return hostPermitted(constraint.toLowerCase(), uriHost(value));
  const scoped = hierarchicalUri.exec(constraint);
  if (!scoped) return opaquePermitted(constraint, value);
  const named = hierarchicalUri.exec(value);
  if (!named || named[2]!.includes('@') || scoped[2]!.includes('@')) return false;
  if (named[1]!.toLowerCase() !== scoped[1]!.toLowerCase() || named[2]!.toLowerCase() !== scoped[2]!.toLowerCase()) return false;
  return pathPermitted(scoped[3]!, named[3]!);
}

/** The host of a hierarchical URI without userinfo (lower case, no port), or undefined. */
function uriHost(value: string): string | undefined {
  const named = hierarchicalUri.exec(value);
  if (!named || named[2]!.includes('@') || hasDotSegment(named[3]!)) return undefined;
  return named[2]!.replace(/:\d*$/, '').toLowerCase();
}

function hostPermitted(constraint: string, host: string | undefined): boolean {
  if (host === undefined || host === '') return false;
  return constraint.startsWith('.') ? host.endsWith(constraint) && host.length > constraint.length : host === constraint;
}

/** `/agent` and `/agent/` both permit `/agent/…` (and `/agent` itself), never `/agents` or `/agent-x`. */
function pathPermitted(constraintPath: string, path: string): boolean {
  if (hasDotSegment(path)) return false;
  const base = constraintPath.endsWith('/') ? constraintPath.slice(0, -1) : constraintPath;
  return base === '' || path === base || path.startsWith(`${base}/`);
}

function hasDotSegment(path: string): boolean {
  return path.split('/').some((segment) => segment === '.' || segment === '..');
}

function opaquePermitted(constraint: string, value: string): boolean {
  const base = constraint.endsWith(':') ? constraint.slice(0, -1) : constraint;
  return value === base || value.startsWith(`${base}:`);
}
