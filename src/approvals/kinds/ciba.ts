import { acr } from '../../identity/acr.ts';
import { fourEyesEligible } from '../four-eyes.ts';
import type { ApprovalKind } from '../kinds.ts';

/**
 * A CIBA authentication request (OpenID CIBA Core 1.0, src/endpoints/backchannel): the person the
 * token is for approves on their own device, and, when policy asks, second persons too.
 * NOTE (contract, issue 15): `describe`, `onSettled` and `afterSettled` (ping) land with the CIBA work.
 */
export const cibaKind: ApprovalKind = {
  name: 'ciba',
  approverAcr: acr.phishingResistant,
  subjectAcr: acr.phishingResistant,
  eligible: fourEyesEligible,
  describe: (request) => ({ title: 'Sign-in request', lines: [{ label: 'Request', value: request.id }] }),
};
