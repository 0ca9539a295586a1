/**
 * How the signals name a resource a client asks for (`new_resource`): its type and id, as the
 * policy schema types it — `Instrument:EURUSD`, `Account:ACC-1` — the same whether it came in an
 * authorization_details entry at issuance or as an AuthZEN resource at an evaluation.
 */
export function riskResourceName(type: 'Instrument' | 'Account', id: string): string {
  return `${type}:${id}`;
}
