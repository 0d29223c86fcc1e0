// UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, version 7, 74 random bits from
// crypto.getRandomValues, variant 10.

export function uuidv7(nowMillis: number): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let millis = Math.max(0, Math.floor(nowMillis));
  for (let index = 5; index >= 0; index--) {
    bytes[index] = millis % 256;
    millis = Math.floor(millis / 256);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
