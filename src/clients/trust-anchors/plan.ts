import type { X509Certificate } from 'node:crypto';
import type { Context } from '../../context.ts';
import { caProblem, pathToAnchor } from '../../certificates/path.ts';
import type { Partner } from '../../federation/definition.ts';
import type { Validator } from '../../validation.ts';
import type { ClientMetadata } from '../metadata.ts';
import { anchorsOf, clientCaBundle, resolveAnchor, type AnchorSources } from './resolve.ts';
import { parseAnchorValue, sha256Hex } from './value.ts';

type Entry<T> = { item: T; at: number };

/**
 * Apply's cross-checks of trust anchors (the admin API's client writes go through apply too), each a
 * problem at its path:
 * - a partner's anchors and intermediates are valid now, each intermediate chains to its anchor,
 *   and one CA certificate is one partner's anchor only (its revocation setting must be one);
 * - a client's `tls_client_auth_trust_anchor` names an anchor that exists — a partner's (in the
 *   document or stored) still declaring it, a thumbprint of a CA in CLEARANCE_TLS_CLIENT_CA or among
 *   the partners' anchors, a PEM CA certificate valid now;
 * - a partner's new profile still declares every anchor a stored client is bound to.
 */
export async function planTrustAnchors(
  ctx: Pick<Context, 'partners' | 'clients' | 'clock' | 'config'>,
  v: Validator,
  clients: readonly Entry<ClientMetadata>[],
  partners: readonly Entry<Partner>[],
): Promise<void> {
  const now = ctx.clock.now();
  const stored = await ctx.partners.list();
  const declared = new Set(partners.map((p) => p.item.id));
  const inForce = [...partners.map((p) => p.item), ...stored.filter((p) => !declared.has(p.id))];
  const holders = new Map<string, string>();
  for (const partner of stored) if (!declared.has(partner.id)) for (const anchor of anchorsOf(partner)) holders.set(anchor.sha256, partner.id);

  for (const { item: partner, at } of partners) {
    for (const [i, anchor] of anchorsOf(partner).entries()) {
      const path = `partners[${at}].trust_anchors[${i}]`;
      const problem = caProblem(anchor.certificate, 0, now, 'the certificate');
      if (problem) v.fail(`${path}.certificate`, problem);
      const holder = holders.get(anchor.sha256);
      if (holder !== undefined && holder !== partner.id) v.fail(`${path}.certificate`, `is also a trust anchor of partner ${holder}: a CA is one partner's anchor, with one revocation setting`);
      else holders.set(anchor.sha256, partner.id);
      for (const [j, intermediate] of anchor.intermediates.entries()) {
        const others = anchor.intermediates.filter((_, k) => k !== j);
        const outcome = intermediateProblem(intermediate, anchor.certificate, others, now);
        if (outcome) v.fail(`${path}.intermediates`, `certificate ${j + 1}: ${outcome}`);
      }
    }
  }

  const sources: AnchorSources = { partners: inForce, bundle: clientCaBundle(ctx.config.tls?.clientCaFile) };
  for (const { item: client, at } of clients) {
    const problem = anchorProblem(client, sources, now);
    if (problem) v.fail(`clients[${at}].tls_client_auth_trust_anchor`, problem);
  }

  // A partner's new profile must not drop an anchor a client outside the document is bound to.
  const inDocument = new Set(clients.map((c) => c.item.client_id));
  for (const stored of await ctx.clients.list()) {
    const value = stored.metadata.tls_client_auth_trust_anchor;
    if (value === undefined || inDocument.has(stored.metadata.client_id) || stored.disabledAt !== null) continue;
    const parsed = parseAnchorValue(value);
    if ('error' in parsed || parsed.kind !== 'partner') continue;
    const entry = partners.find((p) => p.item.id === parsed.partner);
    if (entry && !anchorsOf(entry.item).some((a) => a.name === parsed.name)) {
      v.fail(`partners[${entry.at}].trust_anchors`, `no longer declares "${parsed.name}", which client ${stored.metadata.client_id} is bound to (change the client's tls_client_auth_trust_anchor first)`);
    }
  }
}

/** Why a client's anchor does not name a usable CA now; undefined when it does (or it has none). */
export function anchorProblem(client: ClientMetadata, sources: AnchorSources, now: number): string | undefined {
  if (client.tls_client_auth_trust_anchor === undefined) return undefined;
  const value = parseAnchorValue(client.tls_client_auth_trust_anchor);
  if ('error' in value) return value.error;
  const resolved = resolveAnchor(value, sources);
  if ('error' in resolved) return resolved.error;
  if (resolved.kind === 'ca') return caProblem(resolved.certificate, 0, now, 'the anchor certificate');
  return undefined;
}

/** Why an intermediate a profile lists does not chain to its anchor, valid now. */
function intermediateProblem(intermediate: X509Certificate, anchor: X509Certificate, others: readonly X509Certificate[], now: number): string | undefined {
  if (sha256Hex(intermediate) === sha256Hex(anchor)) return 'is the anchor itself';
  const problem = caProblem(intermediate, 0, now, 'it');
  if (problem) return problem;
  const path = pathToAnchor(intermediate, [anchor], others, now);
  return path.ok ? undefined : `does not chain to the anchor: ${path.detail}`;
}
