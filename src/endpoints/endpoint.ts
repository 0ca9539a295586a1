import type { FastifyInstance } from 'fastify';
import type { Context } from '../context.ts';

/** An endpoint module: registers its routes and says what discovery should advertise for it. */
export interface Endpoint {
  register(app: FastifyInstance, ctx: Context): void;
  /** Authorization server metadata (RFC 8414 §2) this endpoint contributes. */
  metadata?(ctx: Context): Record<string, unknown>;
}

/** The path part of the issuer, under which every endpoint lives ('' for a host-only issuer). */
export function issuerPath(issuer: string): string {
  return new URL(issuer).pathname.replace(/\/+$/, '');
}
