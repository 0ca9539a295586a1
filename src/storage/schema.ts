import type { KeyTables } from '../keys/tables.ts';
import type { ClientTables } from '../clients/tables.ts';
import type { ResourceServerTables } from '../resource-servers/tables.ts';
import type { GenerationTables } from './generations.ts';

/**
 * The whole schema as Kysely sees it. Each component declares its own tables in its folder;
 * no component queries another's tables.
 */
export interface Database extends KeyTables, ClientTables, ResourceServerTables, GenerationTables {}
