import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import { CustodyError, type CustodyKey, type KeyCustody } from './custody.ts';
import type { SoftwareCustody } from './software.ts';

/**
 * The custodies a process has: software always, PKCS#11 when configured. A key's `ref` says which
 * holds it (`software:` or `pkcs11:`), so every stored reference loads from the right one.
 */
export class Custodies {
  readonly software: SoftwareCustody;
  readonly pkcs11: KeyCustody | undefined;

  constructor(software: SoftwareCustody, pkcs11?: KeyCustody) {
    this.software = software;
    this.pkcs11 = pkcs11;
  }

  /** The custody `kind`, refusing PKCS#11 when it is not configured. */
  of(kind: 'software' | 'pkcs11'): KeyCustody {
    if (kind === 'software') return this.software;
    if (!this.pkcs11) throw new CustodyError('PKCS#11 custody is not configured (CLEARANCE_PKCS11_MODULE, CLEARANCE_PKCS11_TOKEN, CLEARANCE_PKCS11_PIN)');
    return this.pkcs11;
  }

  /** `executor`: the transaction to read software keys in (on SQLite another read would wait for it). */
  load(ref: string, executor?: Kysely<Database> | Transaction<Database>): Promise<CustodyKey> {
    if (ref.startsWith('software:')) return this.software.load(ref, executor);
    if (ref.startsWith('pkcs11:')) return this.of('pkcs11').load(ref);
    throw new CustodyError(`custody reference ${ref.slice(0, 40)} names no custody`);
  }
}
