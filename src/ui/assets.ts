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
