import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** The one stylesheet of Clearance's pages, read once at start. */
export const stylesheet: Buffer = readFileSync(new URL('./assets/clearance.css', import.meta.url));

/**
 * A version derived from the content: pages link `/assets/clearance.css?v=<version>`, so the
 * stylesheet can be cached for a year (immutable) and a new release is fetched at once.
 */
export const stylesheetVersion: string = createHash('sha256').update(stylesheet).digest('base64url').slice(0, 12);

/** The stylesheet's path under the issuer's path `base`, with its version. */
export function stylesheetHref(base: string): string {
  return `${base}/assets/clearance.css?v=${stylesheetVersion}`;
}

/** A script of Clearance's pages: its bytes, served from `path`, and its SRI digest (W3C SRI §3.1). */
export interface PageScript {
  /** Under the issuer's path, without the version. */
  path: string;
  body: Buffer;
  version: string;
  /** `sha384-…`: the browser refuses the script if its bytes differ. */
  integrity: string;
}

function pageScript(path: string, body: Buffer): PageScript {
  return {
    path,
    body,
    version: createHash('sha256').update(body).digest('base64url').slice(0, 12),
    integrity: `sha384-${createHash('sha384').update(body).digest('base64')}`,
  };
}

/**
 * The only scripts any page runs, both for passkeys (the sign-in, consent, account and approval
 * pages; every other page has none): the SimpleWebAuthn browser bundle as its package ships it (UMD, defines
 * `SimpleWebAuthnBrowser`), and Clearance's own small page script (assets/passkeys.js).
 */
export const passkeyScripts: readonly PageScript[] = [
  pageScript('/assets/webauthn.js', readFileSync(new URL('../dist/bundle/index.umd.min.js', new URL(import.meta.resolve('@simplewebauthn/browser'))))),
  pageScript('/assets/passkeys.js', readFileSync(new URL('./assets/passkeys.js', import.meta.url))),
];

/** The scripts' URLs as a page's CSP names them (CSP3 §6.7.2.9: a path without '/' at its end matches that file only). */
export function passkeyScriptSources(issuer: string): string[] {
  const url = new URL(issuer);
  const base = url.pathname.replace(/\/+$/, '');
  return passkeyScripts.map((script) => `${url.origin}${base}${script.path}`);
}
