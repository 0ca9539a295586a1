import type { AuditTables } from '../audit/tables.ts';
import type { KeyTables } from '../keys/tables.ts';
import type { ClientTables } from '../clients/tables.ts';
import type { ResourceServerTables } from '../resource-servers/tables.ts';
import type { GenerationTables } from './generations.ts';
import type { RevocationTables } from '../tokens/revocation.ts';
import type { RegistrationTables } from '../clients/registration/tables.ts';
import type { ReplayTables } from '../tokens/tables.ts';
import type { IdentityTables } from '../identity/tables.ts';
import type { FactorTables } from '../identity/factors/tables.ts';
import type { AuthorizationTables } from '../authorization/tables.ts';
import type { EntityTables } from '../entities/tables.ts';
import type { PolicyTables } from '../policy/tables.ts';
import type { MandateTables } from '../mandates/tables.ts';
import type { PartnerBaselineTables, PartnerTables } from '../federation/tables.ts';
import type { RoleRequirementTables } from '../identity/role-requirements.ts';
import type { FirstUseTables } from '../policy/first-use.ts';
import type { PasskeyTables } from '../identity/passkeys/tables.ts';
import type { ApprovalTables } from '../approvals/tables.ts';
import type { SignalTables } from '../signals/tables.ts';
import type { SsfTables } from '../signals/ssf/tables.ts';
import type { RecoveryTables } from '../identity/recovery/tables.ts';
import type { BreakGlassTables } from '../approvals/break-glass/tables.ts';
import type { CibaTables } from '../ciba/tables.ts';
import type { RiskTables } from '../risk/tables.ts';
import type { AnomalyTables } from '../risk/anomalies/tables.ts';
import type { RateLimitTables } from '../risk/limits/settings.ts';
import type { KycTables } from '../risk/kyc/tables.ts';
import type { AdminActionTables } from '../risk/admin-actions.ts';
import type { TransactionTables } from '../transactions/txn.ts';
import type { TransactionPartnerTables } from '../transactions/partner-txn.ts';
import type { PkiTables } from '../pki/tables.ts';
import type { AgentTables } from '../agents/tables.ts';
import type { EvidenceTables } from '../evidence/tables.ts';
import type { BrokeringTables } from '../federation/upstream/tables.ts';
import type { PersonCertificateTables } from '../identity/certificates/tables.ts';
import type { ReferenceTokenTables } from '../tokens/reference-tokens.ts';
import type { LifecycleTables } from '../lifecycle/tables.ts';
import type { ScimTables } from '../lifecycle/scim/tables.ts';
import type { SubjectKeyTables } from '../audit/subject-keys.ts';
import type { TransferDestinationTables } from '../transfers/tables.ts';
import type { TransferControlTables } from '../transfers/controls.ts';
import type { TransferLedgerTables } from '../transfers/totals-database.ts';
import type { TransferUseTables } from '../transfers/destination-uses.ts';
import type { MasterKeyTables } from '../keys/master-key-tables.ts';

/**
 * The whole schema as Kysely sees it. Each component declares its own tables in its folder;
 * no component queries another's tables.
 */
export interface Database extends AuditTables, KeyTables, ClientTables, ResourceServerTables, GenerationTables, RevocationTables, ReplayTables, RegistrationTables, IdentityTables, FactorTables, AuthorizationTables, EntityTables, PolicyTables, MandateTables, PartnerTables, PartnerBaselineTables, RoleRequirementTables, FirstUseTables, PasskeyTables, ApprovalTables, SignalTables, RecoveryTables, BreakGlassTables, CibaTables, RiskTables, AnomalyTables, RateLimitTables, KycTables, AdminActionTables, TransactionTables, TransactionPartnerTables, SsfTables, PkiTables, AgentTables, EvidenceTables, BrokeringTables, PersonCertificateTables, LifecycleTables, ReferenceTokenTables, ScimTables, TransferDestinationTables, TransferControlTables, TransferLedgerTables, TransferUseTables, SubjectKeyTables, MasterKeyTables {}
