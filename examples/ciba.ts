/**
 * A decoupled order approval (OpenID CIBA, poll mode): the desk application asks Clearance for a
 * token to place one order for a trader, without a browser redirect; the trader approves it on
 * their own device (/account/approvals, with a passkey), and, when the firm's four-eyes policies
 * ask (examples/policies/four-eyes.cedar: above 30 million one supervisor, above 40 million two),
 * so does a supervisor of their desk on theirs. The app polls the token endpoint meanwhile.
 *
 *   npx clearance apply -f examples/people.yaml        # prints desk-app's client_secret once
 *   npm run example:ciba -- <client_secret> --order 35000000 [--user alice]
 *
 * It prints the request's id and binding message, waits (printing each `authorization_pending`),
 * then prints the access token's claims: `approvals` names the supervisor, `txn` the request, whose
 * evidence `npx clearance audit export --txn <txn>` exports. Plain fetch, to show the protocol
 * (CIBA Core §7.1 and §10.1).
 * Environment: CLEARANCE_ISSUER (default http://localhost:9000).
 */
import { randomInt } from 'node:crypto';
import { decodeJwt } from 'jose';

const issuer = process.env.CLEARANCE_ISSUER ?? 'http://localhost:9000';
const argument = (name: string) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const secret = process.argv[2];
const amount = argument('--order') ?? '35000000';
const user = argument('--user') ?? 'alice';
if (!secret || secret.startsWith('--') || !/^\d{1,15}$/.test(amount)) {
  console.error('usage: npm run example:ciba -- <client_secret of desk-app> [--order AMOUNT] [--user USERNAME]');
  process.exit(2);
}

const metadata = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, string>;
const authorization = `Basic ${Buffer.from(`desk-app:${secret}`).toString('base64')}`;
const post = async (url: string, body: Record<string, string>) => {
  const response = await fetch(url, { method: 'POST', headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body) });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
};

// One buy order in a UK gilt, up to AMOUNT pounds (RFC 9396 authorization_details).
const order = {
  type: 'order',
  instrument: { class: 'rates', symbol: 'UKT 4.25 2032' },
  side: 'buy',
  max_notional: { amount, currency: 'GBP' },
  venue: 'XEXD',
  account: 'GB-RATES-001',
};
// Shown on both devices, so the people approving can tell this request from any other.
const bindingMessage = `ORDER-${randomInt(1000, 9999)}`;
const started = await post(metadata.backchannel_authentication_endpoint!, {
  scope: 'openid order:create',
  login_hint: user,
  binding_message: bindingMessage,
  resource: 'https://orders.broker.example/api',
  authorization_details: JSON.stringify([order]),
});
if (started.status !== 200) {
  console.error('the request was refused:', started.json);
  process.exit(1);
}
const authReqId = started.json.auth_req_id as string;
let interval = Number(started.json.interval ?? 5);
console.log(`Asked for ${user}'s approval of buying up to ${amount} GBP of UKT 4.25 2032 (binding message ${bindingMessage}).`);
console.log(`Approve it at ${issuer}/account/approvals as ${user}, and as a supervisor of the rates desk if the policies ask.`);

for (;;) {
  await new Promise((resolve) => setTimeout(resolve, interval * 1000));
  const polled = await post(metadata.token_endpoint!, { grant_type: 'urn:openid:params:grant-type:ciba', auth_req_id: authReqId });
  if (polled.status === 200) {
    const claims = decodeJwt(polled.json.access_token as string);
    console.log('\nAccess token claims:');
    console.log(JSON.stringify(claims, null, 2));
    console.log(`\nThe evidence: npx clearance audit export --txn ${String(claims.txn)} > order.json && npx clearance audit verify-bundle order.json`);
    break;
  }
  const error = polled.json.error;
  if (error === 'authorization_pending') {
    process.stdout.write('.');
    continue;
  }
  // CIBA §11: slow_down means poll less often from now on.
  if (error === 'slow_down') {
    interval += 5;
    continue;
  }
  console.error(`\n${String(error)}: ${String(polled.json.error_description ?? '')}`);
  process.exit(1);
}
