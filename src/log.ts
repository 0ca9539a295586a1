import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import { traceLogFields, tracingOn } from './telemetry/spans.ts';

/**
 * The process id of this node in logs and audit events: CLEARANCE_NODE_NAME (else the host name)
 * and the pid. Containers on the host's network share its host name and all run as pid 1, so
 * each is given a name of its own there (docs/deployment.md).
 */
export const nodeId = `${process.env.CLEARANCE_NODE_NAME || hostname()}:${process.pid}`;

/**
 * JSON logs (pino). Credentials never reach a log line: headers that carry them are redacted and
 * request URLs are logged without their query string (which may hold codes or state), and without
 * the token of a recovery's enrolment link (`/recovery/{token}`, src/endpoints/recovery).
 * Created after tracing started (src/telemetry/tracing.ts), its lines carry the trace's ids.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { node: nodeId },
      // With tracing on, a line written in a traced request names its trace_id and span_id.
      ...(tracingOn ? { mixin: traceLogFields } : {}),
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers.dpop', 'req.headers["x-client-cert"]'],
        censor: '[redacted]',
      },
      serializers: {
        req: (req: { method: string; url: string; ip?: string; socket?: { remoteAddress?: string } }) => ({
          method: req.method,
          path: loggedPath(req.url),
          remoteAddress: req.ip ?? req.socket?.remoteAddress,
        }),
      },
    },
    destination as pino.DestinationStream | undefined,
  );
}

/** A request's path as logged: no query, and a recovery link's token replaced (it is a credential). */
export function loggedPath(url: string): string {
  return url.split('?')[0]!.split('#')[0]!.replace(/\/recovery\/[^/]+/, '/recovery/[redacted]');
}
