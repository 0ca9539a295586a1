import { Counter } from 'prom-client';
import { grants } from '../../grants/index.ts';
import { hotCounter, metricsRegistry, type HotCount } from '../../metrics.ts';
import { OAuthError } from '../../oauth-error.ts';

/**
 * Tokens issued and refused at the token endpoint, by grant type, and refusals by OAuth error
 * code (docs/operations.md "Metrics"). Labels are bounded: a grant type this server does not
 * support is `other`, and an error that is not an OAuth refusal is `server_error`.
 */
/** Issued tokens by grant type (the hot path: a plain number per grant, src/metrics.ts hotCounter). */
const issuedCounts = hotCounter({ name: 'clearance_tokens_issued_total', help: 'Token responses the token endpoint gave, by grant type.', labelNames: ['grant_type'] });

const denied = new Counter({
  name: 'clearance_token_denials_total',
  help: 'Token requests refused, by grant type and OAuth error code.',
  labelNames: ['grant_type', 'error'],
  registers: [metricsRegistry],
});

const known = new Set(grants.map((g) => g.grantType));

/** The grant type as a label: one the server supports, else `other` (`missing` when absent). */
export function grantLabel(value: string | undefined): string {
  if (value === undefined || value === '') return 'missing';
  return known.has(value) ? value : 'other';
}

/** Each grant label's slot, found at its first token (a grant never used shows no series). */
const issuedSlots = new Map<string, HotCount>();

export const tokenMetrics = {
  issued: (grantType: string) => {
    let slot = issuedSlots.get(grantType);
    if (!slot) issuedSlots.set(grantType, (slot = issuedCounts({ grant_type: grantType })));
    slot.n++;
  },
  denied: (grantType: string, error: unknown) => denied.labels(grantType, error instanceof OAuthError && error.status < 500 ? error.error : 'server_error').inc(),
};
