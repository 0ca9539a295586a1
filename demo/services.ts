/**
 * The three resource servers of the demo, each a small fastify app protected by the guard library
 * (`clearance/guard`): the arranger's order API, the broker's execution API and the clearing
 * firm's settlement API. Each verifies the token it is sent, and the first two exchange it
 * (RFC 8693) for a token to the next hop.
 */
import { createHash, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { createEvidenceRecorder, createGuard, createIdempotencyGuard, MemoryIdempotencyStore, traceContextHeaders, type EvidenceRecorder, type VerifiedAccess } from 'clearance/guard';
import { clearanceGuard, idempotent } from 'clearance/guard/fastify';
import { tracingOn } from '../src/telemetry/spans.ts';
import { traceRequests } from '../src/telemetry/fastify.ts';
import { dpopProof, newDpopKey, tokenRequest, type FirmClient } from './clients.ts';

const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

export interface Order {
  instrument: string;
  instrument_class: string;
  side: 'buy' | 'sell';
  notional: number;
  currency: string;
}

export interface Service {
  app: FastifyInstance;
  url: string;
}

/** A refusal a service passes back: the hop that refused and Clearance's (or the guard's) error. */
function refused(reply: { code(n: number): { send(b: unknown): unknown } }, hop: string, status: number, body: Record<string, unknown>) {
  return reply.code(status === 409 ? 409 : 403).send({ error: 'refused', hop, upstream_status: status, upstream: body });
}

async function listen(app: FastifyInstance, port: number): Promise<Service> {
  await app.listen({ host: '127.0.0.1', port });
  return { app, url: `http://127.0.0.1:${port}` };
}

/**
 * A firm's API behind the guard. With tracing on (docs/observability.md), each request is a span
 * named after the firm that continues the caller's trace, as a firm's own OpenTelemetry setup would
 * make it (here Clearance's, src/telemetry/fastify.ts); the guard names its txn and client, and
 * the calls the handler makes (the token exchange, the next hop) carry its `traceparent`.
 */
function guarded(issuer: string, audience: string, options: { requireSenderConstraint?: boolean; firm: string }) {
  const app = Fastify({ logger: false });
  if (tracingOn) traceRequests(app, { name: options.firm });
  const guard = createGuard({ issuer, audience, jwksUri: `${issuer}/jwks`, allowHttp: true, ...(options.requireSenderConstraint ? { requireSenderConstraint: true } : {}) });
  void app.register(clearanceGuard, { guard, origin: audience });
  return { app, guard };
}

const chainOf = (access: VerifiedAccess) => access.actors.map((a) => a.sub);

/**
 * A firm's evidence producer (docs/evidence.md): a system of its own (an OMS, a settlement system)
 * that keeps each payload it handled in its archive and appends the payload's hash to Clearance's
 * audit log under the trade's txn, signed with its client key (clearance/guard's recorder).
 */
export interface EvidenceProducer {
  client: FirmClient;
  /** Where the producer keeps the payloads it recorded (one file per event, named by its event id). */
  archive: string;
}

/** What a producer recorded, for the demo to show and check. */
export interface RecordedPayload {
  event_id: string;
  type: string;
  payload_sha256: string;
  file: string;
}

function producerOf(issuer: string, producer: EvidenceProducer) {
  const recorder: EvidenceRecorder = createEvidenceRecorder({ issuer, clientAuth: { clientId: producer.client.clientId, privateKey: producer.client.privateKey, kid: `${producer.client.clientId}-1` } });
  return async (txn: string, type: string, eventId: string, record: unknown): Promise<RecordedPayload> => {
    const payload = `${JSON.stringify(record, null, 2)}\n`;
    const file = join(producer.archive, `${producer.client.clientId}-${eventId}.json`);
    writeFileSync(file, payload);
    const recorded = await recorder.record({ txn, type, eventId, payload, occurredAt: new Date() });
    return { event_id: recorded.event_id, type: recorded.type, payload_sha256: recorded.payload_sha256, file };
  };
}

/**
 * The clearing firm: accepts a settlement instruction once per txn (DPoP-bound tokens only); with a
 * settlement system as evidence producer, records each accepted instruction (`settlement.instructed`).
 */
export async function startClearing(issuer: string, audience: string, port: number, settlementSystem?: EvidenceProducer): Promise<Service> {
  const { app } = guarded(issuer, audience, { requireSenderConstraint: true, firm: 'clearing' });
  const idem = createIdempotencyGuard({ store: new MemoryIdempotencyStore() });
  const record = settlementSystem ? producerOf(issuer, settlementSystem) : undefined;
  app.post(
    '/settlements',
    { config: { clearance: { scopes: ['settlement:submit'] } } },
    idempotent(idem, { action: 'settlement:submit', fingerprint: (r) => createHash('sha256').update(JSON.stringify(r.body)).digest('hex') }, async (request) => {
      const access = request.access!;
      const settlementId = `STL-${randomUUID().slice(0, 8)}`;
      const evidence = record && access.txn ? await record(access.txn, 'settlement.instructed', settlementId, { settlement_id: settlementId, txn: access.txn, instructed_by: access.clientId, for: access.subject, instruction: request.body }) : undefined;
      return { settlement_id: settlementId, txn: access.txn, subject: access.subject, on_behalf_chain: chainOf(access), mandate: access.mandate, bound: access.binding.method, ...(evidence ? { evidence } : {}) };
    }),
  );
  return listen(app, port);
}

/**
 * The broker: executes an order, then instructs settlement at the clearing firm through an
 * exchanged, DPoP-bound token. With an OMS as evidence producer, records each order it receives
 * (`order.received`) before executing it.
 */
export async function startBroker(issuer: string, audience: string, port: number, client: FirmClient, clearing: { audience: string; url: string }, oms?: EvidenceProducer): Promise<Service> {
  const { app } = guarded(issuer, audience, { firm: 'broker' });
  const record = oms ? producerOf(issuer, oms) : undefined;
  const dpopKey = await newDpopKey();
  // What was sent to clearing, by execution id: a retry sends the same instruction again.
  const instructions = new Map<string, { token: string; body: Record<string, unknown> }>();
  const settle = async (token: string, body: Record<string, unknown>) => {
    const url = `${clearing.url}/settlements`;
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `DPoP ${token}`, dpop: await dpopProof(dpopKey, 'POST', `${clearing.audience}/settlements`, token), ...traceContextHeaders() },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  app.post<{ Body: Order }>('/executions', { config: { clearance: { scopes: ['order:create'] } } }, async (request, reply) => {
    const access = request.access!;
    const omsOrderId = `OMS-${randomUUID().slice(0, 8)}`;
    const evidence = record && access.txn ? await record(access.txn, 'order.received', omsOrderId, { oms_order_id: omsOrderId, txn: access.txn, received_from: access.clientId, for: access.subject, order: request.body }) : undefined;
    const execution = { execution_id: `EXE-${randomUUID().slice(0, 8)}`, instrument: request.body.instrument, side: request.body.side, notional: request.body.notional, currency: request.body.currency, price: 1.0842 };
    const exchanged = await tokenRequest(
      issuer,
      client,
      { grant_type: exchangeGrant, subject_token: access.token, subject_token_type: accessTokenType, audience: clearing.audience, scope: 'settlement:submit' },
      dpopKey,
    );
    if (exchanged.status !== 200) return refused(reply, 'broker → Clearance (token exchange)', exchanged.status, exchanged.body);
    const token = exchanged.body.access_token as string;
    const instruction = { execution_id: execution.execution_id, instrument: execution.instrument, side: execution.side, amount: execution.notional, currency: execution.currency };
    instructions.set(execution.execution_id, { token, body: instruction });
    const settled = await settle(token, instruction);
    if (settled.status !== 200) return refused(reply, 'broker → clearing', settled.status, settled.body);
    return { ...execution, txn: access.txn, executed_for: access.subject, chain: chainOf(access), settlement: settled.body, ...(evidence ? { evidence } : {}) };
  });

  // A retry of the settlement instruction of an execution (a time-out on the way back, say).
  app.post<{ Params: { id: string } }>('/executions/:id/resend-settlement', { config: { clearance: false } }, async (request, reply) => {
    const sent = instructions.get(request.params.id);
    if (!sent) return reply.code(404).send({ error: 'not_found' });
    const settled = await settle(sent.token, sent.body);
    return reply.code(settled.status).send(settled.body);
  });
  return listen(app, port);
}

/** The arranger: takes orders under a mandate and routes them to the broker through an exchanged token. */
export async function startArranger(issuer: string, audience: string, port: number, client: FirmClient, broker: { audience: string; url: string }): Promise<Service> {
  const { app } = guarded(issuer, audience, { firm: 'arranger' });
  app.post<{ Body: Order }>('/orders', { config: { clearance: { scopes: ['order:create'] } } }, async (request, reply) => {
    const access = request.access!;
    // An algorithm's order must come under a mandate (the token names its version).
    if (!access.mandate) return reply.code(403).send({ error: 'access_denied', error_description: 'orders from an algorithm need a mandate' });
    const exchanged = await tokenRequest(issuer, client, { grant_type: exchangeGrant, subject_token: access.token, subject_token_type: accessTokenType, resource: broker.audience });
    if (exchanged.status !== 200) return refused(reply, 'arranger → Clearance (token exchange)', exchanged.status, exchanged.body);
    const response = await fetch(`${broker.url}/executions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${exchanged.body.access_token as string}`, ...traceContextHeaders() },
      body: JSON.stringify(request.body),
    });
    const body = (await response.json()) as Record<string, unknown>;
    if (response.status !== 200) return reply.code(response.status).send(body);
    return { order_id: `ORD-${randomUUID().slice(0, 8)}`, mandate: access.mandate, execution: body };
  });
  return listen(app, port);
}

/** Starts the clearing firm, the broker and the arranger (in that order: each needs the next hop's URL). */
export async function startFirms(
  issuer: string,
  audiences: { orders: string; execution: string; clearing: string },
  ports: { orders: number; execution: number; clearing: number },
  clients: { arranger: FirmClient; broker: FirmClient },
  started: { close(): Promise<unknown> }[],
  /** The broker's OMS and the clearing firm's settlement system as evidence producers (docs/evidence.md). */
  producers?: { oms: EvidenceProducer; settlement: EvidenceProducer },
): Promise<{ arranger: Service; broker: Service; clearing: Service }> {
  const clearing = await startClearing(issuer, audiences.clearing, ports.clearing, producers?.settlement);
  started.push(clearing.app);
  const broker = await startBroker(issuer, audiences.execution, ports.execution, clients.broker, { audience: audiences.clearing, url: clearing.url }, producers?.oms);
  started.push(broker.app);
  const arranger = await startArranger(issuer, audiences.orders, ports.orders, clients.arranger, { audience: audiences.execution, url: broker.url });
  started.push(arranger.app);
  return { arranger, broker, clearing };
}
