// The writing side of the protocol (sections 5 and 6.4) in pure JavaScript: a record read under the
// lock (with its lease file folded in, 6.5) and one write give the record to store, or a refusal
// and what it keeps in `late`. Node has no flock, so this client never writes records itself;
// this is the rule, implementable from protocol.md and checked by the writing vectors (10.2), for
// tools that read records and must predict what a writer does.

import { foldLeaseFile, writeLeaseSlot } from "./leasefile.js";
import { parseTimestamp } from "./time.js";
import { ACTIVE } from "./record.js";

const HOLDER_FINISH = ["succeeded", "failed", "lost"];
const READER_REASONS = ["worker-exited", "pid-reused", "lease-expired", "host-rebooted"];
/** 4.2: writers keep at most this many late results. */
export const MAX_LATE = 16;

/**
 * @typedef {import("../index.js").LeaseRecord} LeaseRecord
 * @typedef {import("../index.js").Write} Write
 * @typedef {import("../index.js").WriteOutcome} WriteOutcome
 */

/**
 * Applies `write` to `current` (null when there is no record). Neither argument is changed.
 * @param {LeaseRecord | null} current a valid record
 * @param {Write} write
 * @param {Uint8Array | string | null} [leaseFile] the lease file's bytes, folded into an active `current`
 * @returns {WriteOutcome}
 */
export function applyWrite(current, write, leaseFile) {
  if (write.kind === "create") {
    if (current !== null) return refuse(current);
    return { result: "written", record: write.record };
  }
  if (current === null) throw new TypeError(`a ${write.kind} needs a current record`);
  const cur = foldLeaseFile(current, leaseFile);
  // 5: the first failing check refuses: terminal, then the epoch, then the write's own values.
  const epochOk = !("epoch" in write) || write.epoch === cur.lease.epoch;
  const valuesOk =
    (write.kind !== "finish" || HOLDER_FINISH.includes(write.status)) &&
    (write.kind !== "reap" || READER_REASONS.includes(write.reason));
  if (write.kind === "lease") {
    // 6.5: checked as a renewal; the record is not written, the lease file gets the next slot.
    const given = leaseFile == null ? null : Buffer.from(typeof leaseFile === "string" ? Buffer.from(leaseFile, "utf8") : leaseFile);
    if (!ACTIVE.includes(cur.status) || !epochOk) {
      return { result: "refused", status: current.status, epoch: current.lease.epoch, late: null, record: current, leaseFile: given };
    }
    const slot = {
      epoch: write.epoch,
      monoMs: write.mono_ms,
      wallMs: /** @type {number} */ (parseTimestamp(write.at)),
      beats: write.beats,
      beatAtMs: write.beat_at === null ? null : /** @type {number} */ (parseTimestamp(write.beat_at)),
    };
    return { result: "written", record: current, leaseFile: writeLeaseSlot(leaseFile, slot) };
  }
  if (!ACTIVE.includes(cur.status) || !epochOk || !valuesOk) {
    if (write.kind !== "finish") return refuse(current);
    // 6.4: a refused finish keeps its result in late, whatever refused it.
    const late = {
      at: write.at,
      epoch: write.epoch,
      status: write.status,
      reason: write.reason,
      exit: write.exit,
      progress: write.progress ?? null,
      note: `arrived after the record was ${cur.status} at epoch ${cur.lease.epoch}`,
    };
    const record = { ...cur, late: [...(cur.late ?? []), late].slice(-MAX_LATE) };
    return { result: "refused", status: cur.status, epoch: cur.lease.epoch, late: withoutNote(late), record };
  }
  switch (write.kind) {
    case "renew":
    case "acquire": {
      const epoch = write.kind === "acquire" ? cur.lease.epoch + 1 : cur.lease.epoch;
      /** @type {LeaseRecord} */
      const next = { ...cur, lease: { ...cur.lease, epoch, renewed_at: write.at, renewed_mono_ms: write.mono_ms } };
      if (write.kind === "renew") {
        if (write.running) next.status = "running";
        if (write.child !== undefined) next.child = write.child && { ...unknownOf(cur.child, CHILD), ...write.child };
        if (write.progress !== undefined) next.progress = wholeProgress(write.progress, cur.progress);
      }
      return { result: "written", record: next };
    }
    case "finish": {
      const next = { ...cur, status: write.status, reason: write.reason, exit: write.exit, finished_at: write.at };
      if (write.progress !== undefined) next.progress = wholeProgress(write.progress, cur.progress);
      return { result: "written", record: next };
    }
    case "reap":
      return { result: "written", record: { ...cur, status: "lost", reason: write.reason, finished_at: write.at } };
    case "cancel":
      return { result: "written", record: { ...cur, status: "cancelled", reason: "cancelled", finished_at: write.at } };
  }
  throw new TypeError(`unknown write kind ${JSON.stringify(/** @type {any} */ (write).kind)}`);
}

/** A refusal that changes nothing. @param {LeaseRecord} rec @returns {WriteOutcome} */
function refuse(rec) {
  return { result: "refused", status: rec.status, epoch: rec.lease.epoch, late: null, record: rec };
}

const CHILD = ["pid", "start", "pgid"];
const PROGRESS = ["message", "at", "count", "rejected", "extended_until", "probe"];

/** The members of `obj` a writer does not know (4.3: kept whatever the write). @param {any} obj @param {string[]} known */
function unknownOf(obj, known) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const k of Object.keys(obj ?? {})) if (!known.includes(k)) out[k] = obj[k];
  return out;
}

/**
 * A progress replaces the old one whole: known fields it lacks take their defaults (5), unknown
 * members of the old one are kept unless it sets them (4.3).
 * @param {object} p @param {any} old
 */
function wholeProgress(p, old) {
  return { ...unknownOf(old, PROGRESS), message: null, at: null, count: 0, ...p };
}

/** @param {Record<string, unknown>} late */
function withoutNote(late) {
  const { note: _note, ...rest } = late;
  return rest;
}
