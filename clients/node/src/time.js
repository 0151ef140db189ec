// Timestamps of protocol.md 4.1: RFC 3339, UTC, a `Z` suffix, 0 to 9 fractional digits.

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$/;

/**
 * Milliseconds since the Unix epoch of a protocol timestamp, or null when the text is not one.
 * Digits below the millisecond are dropped (truncated), so a time is never moved later than it was.
 * @param {unknown} text
 * @returns {number | null}
 */
export function parseTimestamp(text) {
  if (typeof text !== "string") return null;
  const m = TIMESTAMP.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC rolls 31 February over into March: reject a day that does not exist.
  if (new Date(ms).getUTCDate() !== day) return null;
  return ms + Number((m[7] ?? "").padEnd(3, "0").slice(0, 3));
}

/**
 * The protocol's form of a wall time, with millisecond precision as writers SHOULD write it.
 * @param {number} ms
 */
export function formatTimestamp(ms) {
  return new Date(ms).toISOString();
}
