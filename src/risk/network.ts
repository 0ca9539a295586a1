import { isIPv4, isIPv6 } from 'node:net';
import { expandIPv6 } from '../clients/authentication/throttle.ts';

/**
 * The network an address belongs to, as the risk signals remember it: an IPv4 address by its /24,
 * an IPv6 address by its /48 (a site), an IPv4-mapped IPv6 address as IPv4. Coarser than the
 * throttles' keys (one host) on purpose: a person moving between desks of one office, or a service
 * scaled out across one subnet, is not on a new network.
 */
export function networkOf(address: string): string {
  let network = networks.get(address);
  if (network === undefined) {
    network = networkOfAddress(address);
    // Callers' addresses repeat request after request (a token request asks two or three times);
    // the bound only keeps memory flat whatever addresses arrive.
    if (networks.size >= maxRemembered) networks.clear();
    networks.set(address, network);
  }
  return network;
}

const maxRemembered = 4096;
const networks = new Map<string, string>();

function networkOfAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const v4 = mapped ? mapped[1]! : address;
  if (isIPv4(v4)) return `${v4.split('.').slice(0, 3).join('.')}.0/24`;
  if (isIPv6(address)) return `${expandIPv6(address).slice(0, 3).join(':')}::/48`;
  return address.slice(0, 64);
}
