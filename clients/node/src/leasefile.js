// The lease file of protocol.md 6.5: two 128-byte ASCII slots that routine renewals overwrite in
// place. A reader folds the newest valid slot into an active record before judging it.

import { crc32 } from "./crc32.js";
import { formatTimestamp } from "./time.js";

const SLOT = 128;
const FILE = 2 * SLOT;
const MAGIC = "tether-lease-1";
const INT = /^(0|[1-9][0-9]*)$/;
const SIGNED = /^(-1|0|[1-9][0-9]*)$/;

/**
 * @typedef {{ seq: number, epoch: number, monoMs: number, wallMs: number, beats: number,
 *             beatAtMs: number | null }} LeaseSlot
 */

/**
 * One slot's fields, or null when it is invalid (wrong form, or a CRC that does not match).
 * @param {Uint8Array} bytes exactly 128 bytes
 * @returns {LeaseSlot | null}
 */
export function parseSlot(bytes) {
  if (bytes.length !== SLOT || bytes[SLOT - 1] !== 0x0a) return null;
  for (let i = 0; i < SLOT - 1; i++) if (bytes[i] < 0x20 || bytes[i] > 0x7e) return null;
  const text = Buffer.from(bytes.subarray(0, SLOT - 1)).toString("latin1").replace(/ +$/, "");
  const parts = text.split(" ");
  if (parts.length !== 8 || parts[0] !== MAGIC) return null;
  const [, seq, epoch, mono, wall, beats, beatAt, crc] = parts;
  if (![seq, epoch, mono, wall, beats].every((s) => INT.test(s)) || !SIGNED.test(beatAt)) return null;
  if (!/^[0-9a-f]{8}$/.test(crc)) return null;
  const covered = bytes.subarray(0, text.length - crc.length - 1);
  if (crc32(covered) !== parseInt(crc, 16)) return null;
  const n = [seq, epoch, mono, wall, beats, beatAt].map(Number);
  if (!n.every(Number.isSafeInteger) || n[0] < 1 || n[1] < 1) return null;
  return { seq: n[0], epoch: n[1], monoMs: n[2], wallMs: n[3], beats: n[4], beatAtMs: n[5] === -1 ? null : n[5] };
}

/**
 * The valid slot with the highest SEQ, or null. A file shorter than 256 bytes has no valid slot.
 * @param {Uint8Array | string | null | undefined} file the file's bytes (a string is encoded as UTF-8)
 */
export function newestSlot(file) {
  if (file == null) return null;
  const bytes = typeof file === "string" ? Buffer.from(file, "utf8") : file;
  if (bytes.length < FILE) return null;
  const slots = [parseSlot(bytes.subarray(0, SLOT)), parseSlot(bytes.subarray(SLOT, FILE))];
  /** @type {LeaseSlot | null} */
  let best = null;
  // Equal SEQs (only a faulty writer makes them): the greater MONO_MS, then the slot at offset 0.
  for (const s of slots) if (s && (!best || s.seq > best.seq || (s.seq === best.seq && s.monoMs > best.monoMs))) best = s;
  return best;
}

/**
 * The lease file after one renewal by a writer that opens it (6.5 Writing): a file shorter than
 * 256 bytes first becomes two empty slots; the slot of the next SEQ (one above the highest valid)
 * is overwritten; bytes after 256 are kept. Node never takes tether's lock, so it never writes the
 * file itself: this is the rule, checked by the writing vectors.
 * @param {Uint8Array | string | null | undefined} file
 * @param {{ epoch: number, monoMs: number, wallMs: number, beats: number, beatAtMs: number | null }} r
 * @returns {Buffer}
 */
export function writeLeaseSlot(file, r) {
  let bytes = file == null ? Buffer.alloc(0) : Buffer.from(typeof file === "string" ? Buffer.from(file, "utf8") : file);
  if (bytes.length < FILE) bytes = Buffer.from(`${" ".repeat(SLOT - 1)}\n`.repeat(2), "latin1");
  const seq = (newestSlot(bytes)?.seq ?? 0) + 1;
  const body = [MAGIC, seq, r.epoch, r.monoMs, r.wallMs, r.beats, r.beatAtMs ?? -1].join(" ");
  const crc = crc32(Buffer.from(body, "latin1")).toString(16).padStart(8, "0");
  const line = `${body} ${crc}`.padEnd(SLOT - 1, " ") + "\n";
  Buffer.from(line, "latin1").copy(bytes, (seq % 2) * SLOT);
  return bytes;
}

/**
 * The record with the lease file folded in (6.5), as a new object; the record itself is not
 * changed. Only an active record reads its lease file, and only a slot of the record's epoch that
 * is newer (by the monotonic clock) than the record's own renewal counts.
 * @template {import("../index.js").LeaseRecord} R
 * @param {R} record a record that passed section 4's checks
 * @param {Uint8Array | string | null | undefined} file
 * @returns {R}
 */
export function foldLeaseFile(record, file) {
  if (record.status !== "starting" && record.status !== "running") return record;
  const slot = newestSlot(file);
  if (!slot || slot.epoch !== record.lease.epoch || slot.monoMs <= record.lease.renewed_mono_ms) return record;
  const lease = { ...record.lease, renewed_mono_ms: slot.monoMs, renewed_at: formatTimestamp(slot.wallMs) };
  const progress = { message: null, at: null, count: 0, ...(record.progress ?? {}) };
  if (slot.beats > progress.count) {
    progress.count = slot.beats;
    if (slot.beatAtMs !== null) progress.at = formatTimestamp(slot.beatAtMs);
  }
  return { ...record, lease, progress };
}
