import { list, nameSchema, object, text, type JsonSchema } from '../authorization/details/common.ts';

/**
 * The FATF travel rule's data (Recommendation 16, INR.15 §7(b); EU Regulation 2023/1113 Art. 14):
 * who sends and who receives a crypto-asset transfer, in the shape of the interVASP Messaging
 * Standard IVMS 101 (the JSON form VASPs exchange), as a subset of it that is enough for the rule:
 * each side's persons — a natural person's names, or a legal person's names — with an optional
 * geographic address and national identification (an LEI for a legal person: identifier type
 * `LEIX`), and the side's account numbers. Field names, code lists and lengths are IVMS 101's.
 * No unknown fields: what is not in the subset is refused rather than carried unchecked.
 */

/** IVMS 101 Max16/35/70/100Text lengths. */
const max = (n: number, keywords: JsonSchema = {}): JsonSchema => text({ maxLength: n, ...keywords });
/** ISO 3166-1 alpha-2 country code (IVMS 101 CountryCode). */
const country = text({ pattern: '^[A-Z]{2}$' });

/** IVMS 101 GeographicAddress: town and country required, the rest as the address has them. */
const geographicAddress = object(
  {
    addressType: text({ enum: ['HOME', 'BIZZ', 'GEOG'] }),
    department: max(50),
    subDepartment: max(70),
    streetName: max(70),
    buildingNumber: max(16),
    buildingName: max(35),
    floor: max(70),
    postBox: max(16),
    room: max(70),
    postcode: max(16),
    townName: max(35),
    townLocationName: max(35),
    districtName: max(35),
    countrySubDivision: max(35),
    addressLine: list(max(70), { maxItems: 7, uniqueItems: false }),
    country,
  },
  ['addressType', 'townName', 'country'],
);

/** IVMS 101 NationalIdentification. */
function nationalIdentification(types: readonly string[]): JsonSchema {
  return object(
    {
      nationalIdentifier: max(35),
      nationalIdentifierType: text({ enum: [...types] }),
      countryOfIssue: country,
      // GLEIF Registration Authorities List code.
      registrationAuthority: text({ pattern: '^RA\\d{6}$' }),
    },
    ['nationalIdentifier', 'nationalIdentifierType'],
  );
}

/** IVMS 101 NaturalPersonNameTypeCode. */
const naturalNameTypes = ['ALIA', 'BIRT', 'MAID', 'LEGL', 'MISC'];
/** IVMS 101 LegalPersonNameTypeCode. */
const legalNameTypes = ['LEGL', 'SHRT', 'TRAD'];

const naturalPerson = object(
  {
    name: object(
      {
        nameIdentifier: list(
          object(
            {
              // The family name (IVMS 101 primaryIdentifier) and the given names (secondaryIdentifier).
              primaryIdentifier: nameSchema(100),
              secondaryIdentifier: nameSchema(100),
              nameIdentifierType: text({ enum: naturalNameTypes }),
            },
            ['primaryIdentifier', 'nameIdentifierType'],
          ),
          { maxItems: 5 },
        ),
      },
      ['nameIdentifier'],
    ),
    geographicAddress: list(geographicAddress, { maxItems: 3 }),
    nationalIdentification: nationalIdentification(['ARNU', 'CCPT', 'RAID', 'DRLC', 'FIIN', 'TXID', 'SOCS', 'IDCD', 'MISC']),
    customerIdentification: max(50),
    countryOfResidence: country,
  },
  ['name'],
);

const legalPerson = object(
  {
    name: object(
      {
        nameIdentifier: list(
          object({ legalPersonName: nameSchema(100), legalPersonNameIdentifierType: text({ enum: legalNameTypes }) }, ['legalPersonName', 'legalPersonNameIdentifierType']),
          { maxItems: 5 },
        ),
      },
      ['nameIdentifier'],
    ),
    geographicAddress: list(geographicAddress, { maxItems: 3 }),
    // IVMS 101 C9: a legal person's identification is an LEI, a registration number, a tax id or other.
    nationalIdentification: nationalIdentification(['LEIX', 'RAID', 'TXID', 'MISC']),
    customerNumber: max(50),
    countryOfRegistration: country,
  },
  ['name'],
);

/** IVMS 101 Person: exactly one of naturalPerson, legalPerson. */
const person = object({ naturalPerson, legalPerson }, [], { minProperties: 1, maxProperties: 1, 'x-message': 'must hold exactly one of naturalPerson, legalPerson' });

/** The account numbers of one side: at the originator's or beneficiary's VASP, or on chain. */
const accountNumber = list(max(100), { maxItems: 5 });

/** IVMS 101 Originator. */
export const originatorSchema: JsonSchema = object({ originatorPersons: list(person, { maxItems: 5, uniqueItems: false }), accountNumber }, ['originatorPersons']);

/** IVMS 101 Beneficiary. */
export const beneficiarySchema: JsonSchema = object({ beneficiaryPersons: list(person, { maxItems: 5, uniqueItems: false }), accountNumber }, ['beneficiaryPersons']);

/** The `travel_rule` member of a transfer entry. */
export const travelRuleSchema: JsonSchema = object({ originator: originatorSchema, beneficiary: beneficiarySchema }, ['originator', 'beneficiary']);

/** IVMS 101 Person, as the schema accepts it. */
export interface Ivms101Person {
  naturalPerson?: { name: { nameIdentifier: { primaryIdentifier: string; secondaryIdentifier?: string; nameIdentifierType: string }[] }; nationalIdentification?: { nationalIdentifier: string; nationalIdentifierType: string } };
  legalPerson?: { name: { nameIdentifier: { legalPersonName: string; legalPersonNameIdentifierType: string }[] }; nationalIdentification?: { nationalIdentifier: string; nationalIdentifierType: string } };
}

/** The travel-rule data of a transfer, as the schema accepts it. */
export interface TravelRule {
  originator: { originatorPersons: Ivms101Person[]; accountNumber?: string[] };
  beneficiary: { beneficiaryPersons: Ivms101Person[]; accountNumber?: string[] };
}

/**
 * The name a person is shown by on the consent page: the legal name (type `LEGL`) when given, else
 * the first; "given names family name" for a natural person.
 */
export function personName(person: Ivms101Person): string {
  if (person.naturalPerson) {
    const names = person.naturalPerson.name.nameIdentifier;
    const n = names.find((i) => i.nameIdentifierType === 'LEGL') ?? names[0]!;
    return n.secondaryIdentifier ? `${n.secondaryIdentifier} ${n.primaryIdentifier}` : n.primaryIdentifier;
  }
  const names = person.legalPerson!.name.nameIdentifier;
  return (names.find((i) => i.legalPersonNameIdentifierType === 'LEGL') ?? names[0]!).legalPersonName;
}

/**
 * Why the travel-rule data breaks a rule the schema does not state, or undefined (the path
 * relative to `travel_rule`): a legal person identified by an LEI (`LEIX`) must carry a valid one.
 */
export function travelRuleProblem(rule: TravelRule, isLei: (value: string) => boolean): string | undefined {
  const sides = [
    ['originator.originatorPersons', rule.originator.originatorPersons],
    ['beneficiary.beneficiaryPersons', rule.beneficiary.beneficiaryPersons],
  ] as const;
  for (const [path, persons] of sides) {
    for (const [i, p] of persons.entries()) {
      const id = p.legalPerson?.nationalIdentification;
      // IVMS 101 C11: an LEI (ISO 17442) where the identifier type says so.
      if (id?.nationalIdentifierType === 'LEIX' && !isLei(id.nationalIdentifier)) return `${path}[${i}].legalPerson.nationalIdentification.nationalIdentifier is not a valid LEI (ISO 17442)`;
    }
  }
  return undefined;
}
