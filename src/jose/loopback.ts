import { BlockList, isIP } from 'node:net';

/**
 * The one definition of "a loopback host" for the rule "https, or plain http to this machine"
 * (client URIs, resource indicators, partner and webhook URLs, the guard's issuer and endpoints).
 * Dependency-free so the guard can share it (docs/guard.md).
 *
 * Loopback: `localhost` (RFC 6761 §6.3), 127.0.0.0/8, ::1, and IPv4-mapped 127.0.0.0/8
 * (`::ffff:127.0.0.1`, which reaches 127.0.0.1). Not loopback: names under `.localhost` and
 * `localhost.` with a trailing dot, which the system resolver may send to DNS, and the other forms
 * that carry an IPv4 address (NAT64, 6to4, IPv4-compatible), which route off the machine. Anything
 * else fails closed. RFC 8252 §7.3's port latitude for native apps' redirect URIs is narrower
 * still and stays with the redirect match (src/authorization/redirect-uri.ts).
 */
const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');
loopback.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** True for a URL's `hostname` (IPv6 in brackets, as `URL` gives it) or a bare name or address that names this machine. */
export function isLoopbackHost(hostname: string): boolean {
  if (hostname.startsWith('[') && hostname.endsWith(']')) {
    const address = hostname.slice(1, -1);
    return isIP(address) === 6 && loopback.check(address, 'ipv6');
  }
  if (hostname.toLowerCase() === 'localhost') return true;
  const family = isIP(hostname);
  return family !== 0 && loopback.check(hostname, family === 6 ? 'ipv6' : 'ipv4');
}
