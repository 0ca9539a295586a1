#!/usr/bin/env node
// The container's HEALTHCHECK (Containerfile): asks this host's Clearance for /readyz and exits 0
// when it answers 200, 1 otherwise (503 while the database is unreachable or the node drains, no
// answer within 2 s). Reads PORT and, when Clearance serves TLS itself (CLEARANCE_TLS_CERT), uses
// https — without checking the certificate, since it connects to its own loopback address.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const port = Number(process.env.PORT ?? 9000);
const tls = Boolean(process.env.CLEARANCE_TLS_CERT);
const send = tls ? httpsRequest : httpRequest;
const probe = send({ host: '127.0.0.1', port, path: '/readyz', method: 'GET', timeout: 2000, rejectUnauthorized: false }, (response) => {
  response.resume();
  process.exitCode = response.statusCode === 200 ? 0 : 1;
});
probe.on('timeout', () => probe.destroy(new Error('no answer within 2 s')));
probe.on('error', (error) => {
  process.stderr.write(`readyz: ${error.message}\n`);
  process.exitCode = 1;
});
probe.end();
