/** Checks on Clearance's HTML pages shared by the endpoint tests. */
import assert from 'node:assert/strict';
import { passkeyScriptSources, passkeyScripts } from '../../src/ui/assets.ts';
import { pageCspOf, type pageCsp } from '../../src/ui/respond.ts';

/** The CSP of a page that runs the passkey scripts (sign-in, account) at `issuer`. */
export function passkeyPageCsp(csp: keyof typeof pageCsp, issuer: string): string {
  return pageCspOf(csp, passkeyScriptSources(issuer));
}

/**
 * A page's scripts are exactly the two passkey scripts, loaded from the issuer's path with their
 * SRI digests: no inline script, no inline style or event handler.
 */
export function assertOnlyPasskeyScripts(body: string, base = ''): void {
  const tags = [...body.matchAll(/<script\b[^>]*>/gi)].map((m) => m[0]);
  assert.deepEqual(
    tags,
    passkeyScripts.map((s) => `<script src="${base}${s.path}?v=${s.version}" integrity="${s.integrity}" defer>`),
  );
  assert.equal((body.match(/<\/script>/g) ?? []).length, tags.length, 'every script is empty: its source is the file');
  assert.doesNotMatch(body.replace(/<script\b[^>]*><\/script>/g, ''), /<script|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');
}
