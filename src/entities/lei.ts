/**
 * Legal Entity Identifier check (ISO 17442): 18 alphanumeric characters then two check digits,
 * valid when the whole code, letters mapped to 10..35, is 1 modulo 97 (ISO 7064 MOD 97-10).
 */
export function isValidLei(value: string): boolean {
  if (!/^[0-9A-Z]{18}[0-9]{2}$/.test(value)) return false;
  let remainder = 0;
  for (const char of value) {
    const digits = char >= 'A' ? String(char.charCodeAt(0) - 55) : char;
    for (const digit of digits) remainder = (remainder * 10 + Number(digit)) % 97;
  }
  return remainder === 1;
}
