import type { Migration } from 'kysely';
import * as foundation from './0001_foundation.ts';
import * as audit from './0002_audit.ts';
import * as replay from './0003_replay.ts';
import * as tokenRevocation from './0004_token_revocation.ts';
import * as registration from './0005_registration.ts';
import * as people from './0006_people.ts';
import * as authorization from './0007_authorization.ts';
import * as policy from './0008_policy.ts';
import * as mandates from './0009_mandates.ts';
import * as partners from './0010_partners.ts';
import * as registrationAuthority from './0011_registration_authority.ts';
import * as refreshRetry from './0012_refresh_retry.ts';
import * as personLifecycle from './0013_person_lifecycle.ts';
import * as grantMandates from './0014_grant_mandates.ts';
import * as flightExpectations from './0015_flight_expectations.ts';
import * as personRoles from './0016_person_roles.ts';
import * as totpFactors from './0017_totp_factors.ts';
import * as passkeys from './0018_passkeys.ts';
import * as stepUp from './0019_step_up.ts';
import * as approvals from './0020_approvals.ts';
import * as approvalRequests from './0021_approval_requests.ts';
import * as cibaRequests from './0022_ciba_requests.ts';
import * as approvalChallenges from './0023_approval_challenges.ts';
import * as recovery from './0024_recovery.ts';
import * as breakGlass from './0025_break_glass.ts';
import * as alertDelivery from './0026_alert_delivery.ts';
import * as risk from './0027_risk.ts';
import * as riskLogin from './0028_risk_login.ts';
import * as riskAnomalies from './0029_risk_anomalies.ts';
import * as rateLimits from './0030_rate_limits.ts';
import * as kyc from './0031_kyc.ts';
import * as transactions from './0032_transactions.ts';
import * as mandateLapses from './0033_mandate_lapses.ts';
import * as auditHolds from './0035_audit_holds.ts';
import * as partnerDrift from './0036_partner_drift.ts';
import * as ssfStreams from './0037_ssf_streams.ts';
import * as holdRelease from './0038_hold_release.ts';
import * as pki from './0039_pki.ts';
import * as agents from './0040_agents.ts';
import * as sessionDevices from './0041_session_devices.ts';
import * as auditKeyCustody from './0042_audit_key_custody.ts';
import * as signingEvidence from './0043_signing_evidence.ts';
import * as generationNotices from './0044_generation_notices.ts';
import * as identityBrokering from './0045_identity_brokering.ts';
import * as personCertificates from './0046_person_certificates.ts';
import * as lifecyclePeople from './0047_lifecycle_people.ts';
import * as scim from './0048_scim.ts';
import * as clientCredentials from './0049_client_credentials.ts';
import * as keySchedule from './0050_key_schedule.ts';
import * as referenceTokens from './0051_reference_tokens.ts';
import * as lifecyclePrune from './0052_lifecycle_prune.ts';
import * as transferDestinations from './0053_transfer_destinations.ts';
import * as transferTotals from './0054_transfer_totals.ts';
import * as externalEvidence from './0055_external_evidence.ts';
import * as auditSubjectKeys from './0056_audit_subject_keys.ts';
import * as keyCompromise from './0057_key_compromise.ts';
import * as masterKey from './0059_master_key.ts';
import * as transactionPartners from './0061_transaction_partners.ts';
import * as refreshTokenExpiry from './0062_refresh_token_expiry.ts';
import * as credentialHolds from './0063_credential_holds.ts';
import * as kycFreezeHolder from './0064_kyc_freeze_holder.ts';
import * as passwordSetBy from './0065_password_set_by.ts';
import * as upstreamLoginAsk from './0066_upstream_login_ask.ts';
import * as transferHolderTime from './0067_transfer_holder_time.ts';
import * as agentModelVersions from './0068_agent_model_versions.ts';
import * as refreshTokensClient from './0069_refresh_tokens_client.ts';

/** Every migration, in order. Names are permanent: they are recorded in the database. */
export const migrations: Record<string, Migration> = {
  '0001_foundation': foundation,
  '0002_audit': audit,
  '0003_replay': replay,
  '0004_token_revocation': tokenRevocation,
  '0005_registration': registration,
  '0006_people': people,
  '0007_authorization': authorization,
  '0008_policy': policy,
  '0009_mandates': mandates,
  '0010_partners': partners,
  '0011_registration_authority': registrationAuthority,
  '0012_refresh_retry': refreshRetry,
  '0013_person_lifecycle': personLifecycle,
  '0014_grant_mandates': grantMandates,
  '0015_flight_expectations': flightExpectations,
  '0016_person_roles': personRoles,
  '0017_totp_factors': totpFactors,
  '0018_passkeys': passkeys,
  '0019_step_up': stepUp,
  '0020_approvals': approvals,
  '0021_approval_requests': approvalRequests,
  '0022_ciba_requests': cibaRequests,
  '0023_approval_challenges': approvalChallenges,
  '0024_recovery': recovery,
  '0025_break_glass': breakGlass,
  '0026_alert_delivery': alertDelivery,
  '0027_risk': risk,
  '0028_risk_login': riskLogin,
  '0029_risk_anomalies': riskAnomalies,
  '0030_rate_limits': rateLimits,
  '0031_kyc': kyc,
  '0032_transactions': transactions,
  '0033_mandate_lapses': mandateLapses,
  '0035_audit_holds': auditHolds,
  '0036_partner_drift': partnerDrift,
  '0037_ssf_streams': ssfStreams,
  '0038_hold_release': holdRelease,
  '0039_pki': pki,
  '0040_agents': agents,
  '0041_session_devices': sessionDevices,
  '0042_audit_key_custody': auditKeyCustody,
  '0043_signing_evidence': signingEvidence,
  '0044_generation_notices': generationNotices,
  '0045_identity_brokering': identityBrokering,
  '0046_person_certificates': personCertificates,
  '0047_lifecycle_people': lifecyclePeople,
  '0048_scim': scim,
  '0049_client_credentials': clientCredentials,
  '0050_key_schedule': keySchedule,
  '0051_reference_tokens': referenceTokens,
  '0052_lifecycle_prune': lifecyclePrune,
  '0053_transfer_destinations': transferDestinations,
  '0054_transfer_totals': transferTotals,
  '0055_external_evidence': externalEvidence,
  '0056_audit_subject_keys': auditSubjectKeys,
  '0057_key_compromise': keyCompromise,
  '0059_master_key': masterKey,
  '0061_transaction_partners': transactionPartners,
  '0062_refresh_token_expiry': refreshTokenExpiry,
  '0063_credential_holds': credentialHolds,
  '0064_kyc_freeze_holder': kycFreezeHolder,
  '0065_password_set_by': passwordSetBy,
  '0066_upstream_login_ask': upstreamLoginAsk,
  '0067_transfer_holder_time': transferHolderTime,
  '0068_agent_model_versions': agentModelVersions,
  '0069_refresh_tokens_client': refreshTokensClient,
};
