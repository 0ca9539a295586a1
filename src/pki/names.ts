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
 * and its subdomains, `.example.com` only subdomains; a URI constraint is a prefix of the URI
 * (scheme and authority at least, e.g. `spiffe://trading.example/`); an email constraint is a
 * domain (`example.com` exactly, `.example.com` its subdomains) or one whole address.
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
        return entry.value.startsWith(c);
      case 'email': {
        if (constraint.includes('@')) return value === constraint;
        const domain = value.slice(value.lastIndexOf('@') + 1);
        return constraint.startsWith('.') ? domain.endsWith(constraint) : domain === constraint;
      }
    }
  });
}
