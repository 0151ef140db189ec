// Reading a record file as protocol.md section 4 defines it: what makes a record unsupported (4.3)
// or corrupt (4.4). Pure: text or a parsed object in, a classification out.

import { parseTimestamp } from "./time.js";

export const MAX_RECORD_BYTES = 1024 * 1024;
export const STATUSES = ["starting", "running", "succeeded", "failed", "cancelled", "lost"];
export const ACTIVE = ["starting", "running"];
export const REASONS = [
  "exited",
  "signaled",
  "start-failed",
  "heartbeat-timeout",
  "holder-signaled",
  "cancelled",
  "worker-exited",
  "pid-reused",
  "lease-expired",
  "host-rebooted",
];
/** The largest process id: pid_t is a signed 32-bit integer. */
const MAX_PID = 2 ** 31 - 1;

/** A record that breaks section 4; `problem` names the field at fault. */
class Corrupt extends Error {}

/**
 * Classify a record: `{ kind: "ok", record }` with `record` the parsed object (timestamps still
 * strings, as in the file), `{ kind: "unsupported", version }`, or `{ kind: "corrupt", problem }`.
 * @param {string | Uint8Array | object} input the file's text or bytes, or an already parsed object
 * @returns {import("../index.js").Classified}
 */
export function classifyRecord(input) {
  let value = input;
  if (typeof input === "string" || input instanceof Uint8Array) {
    const bytes = typeof input === "string" ? Buffer.byteLength(input) : input.length;
    if (bytes > MAX_RECORD_BYTES) return corrupt(`record is ${bytes} bytes, above the 1 MiB limit`);
    let text = input;
    if (typeof input !== "string") {
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(input);
      } catch {
        return corrupt("record is not valid UTF-8");
      }
    }
    try {
      value = JSON.parse(/** @type {string} */ (text));
    } catch (e) {
      return corrupt(`record is not valid JSON (${/** @type {Error} */ (e).message})`);
    }
  }
  if (!isObject(value)) return corrupt("record is not a JSON object");
  const protocol = /** @type {Record<string, unknown>} */ (value).protocol;
  // 4.3: a newer version is unsupported whatever its other fields hold.
  if (Number.isInteger(protocol) && /** @type {number} */ (protocol) > 1) {
    return { kind: "unsupported", version: /** @type {number} */ (protocol) };
  }
  try {
    validate(/** @type {Record<string, any>} */ (value));
  } catch (e) {
    if (e instanceof Corrupt) return corrupt(e.message);
    throw e;
  }
  return { kind: "ok", record: /** @type {import("../index.js").LeaseRecord} */ (value) };
}

/** @param {string} problem @returns {import("../index.js").Classified} */
function corrupt(problem) {
  return { kind: "corrupt", problem };
}

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** @param {boolean} ok @param {string} problem */
function check(ok, problem) {
  if (!ok) throw new Corrupt(problem);
}

/** @param {unknown} v @param {number} min @param {number} max */
function isIntIn(v, min, max) {
  return Number.isSafeInteger(v) && /** @type {number} */ (v) >= min && /** @type {number} */ (v) <= max;
}

/** @param {Record<string, any>} r @param {string} path */
function required(r, path) {
  check(/** @type {string} */ (path.split(".").pop()) in r, `${path} is missing`);
}

/** @param {unknown} v */
const isString = (v) => typeof v === "string";
/** @param {unknown} v */
const isNullableString = (v) => v === null || typeof v === "string";
/** @param {unknown} v */
const isTimestamp = (v) => parseTimestamp(v) !== null;
/** @param {unknown} v */
const isNullableTimestamp = (v) => v === null || isTimestamp(v);

/**
 * Section 4.4, field by field. Optional fields (name, cwd, holder.time_ns, child, progress, exit,
 * finished_at, late) may be absent; when present they must have their type.
 * @param {Record<string, any>} r
 */
function validate(r) {
  required(r, "protocol");
  check(Number.isInteger(r.protocol) && r.protocol >= 1, "protocol is not an integer >= 1");
  for (const f of ["id", "argv", "created_at", "status", "reason", "holder", "lease"]) required(r, f);
  check(isString(r.id), "id is not a string");
  check(Array.isArray(r.argv) && r.argv.every(isString), "argv is not an array of strings");
  check(isTimestamp(r.created_at), "created_at is not a UTC timestamp ending in Z");
  check(STATUSES.includes(r.status), `status ${JSON.stringify(r.status)} is not one of ${STATUSES.join(", ")}`);
  check(r.reason === null || REASONS.includes(r.reason), `reason ${JSON.stringify(r.reason)} is not a known reason`);
  for (const f of ["name", "cwd"]) check(!(f in r) || isNullableString(r[f]), `${f} is not a string or null`);

  check(isObject(r.holder), "holder is not an object");
  const h = r.holder;
  for (const f of ["pid", "start", "boot_id", "host"]) required(h, `holder.${f}`);
  check(isIntIn(h.pid, 1, MAX_PID), `holder.pid ${JSON.stringify(h.pid)} is not a process id`);
  for (const f of ["start", "boot_id", "host"]) check(isString(h[f]), `holder.${f} is not a string`);
  check(!("time_ns" in h) || isNullableString(h.time_ns), "holder.time_ns is not a string or null");

  if (r.child != null) {
    const c = r.child;
    check(isObject(c), "child is not an object or null");
    check(isIntIn(c.pid, 1, MAX_PID), "child.pid is not a process id");
    check(isIntIn(c.pgid, 1, MAX_PID), "child.pgid is not a process group id");
    check(isString(c.start), "child.start is not a string");
  }

  check(isObject(r.lease), "lease is not an object");
  const l = r.lease;
  for (const f of ["epoch", "interval_ms", "ttl_ms", "renewed_at", "renewed_mono_ms"]) required(l, `lease.${f}`);
  check(isIntIn(l.epoch, 1, Number.MAX_SAFE_INTEGER), "lease.epoch is not an integer >= 1");
  check(isIntIn(l.interval_ms, 1, Number.MAX_SAFE_INTEGER), "lease.interval_ms is not an integer >= 1");
  check(isIntIn(l.ttl_ms, 0, Number.MAX_SAFE_INTEGER), "lease.ttl_ms is not an integer");
  check(l.ttl_ms >= 2 * l.interval_ms, "lease.ttl_ms is below twice lease.interval_ms");
  check(isTimestamp(l.renewed_at), "lease.renewed_at is not a UTC timestamp ending in Z");
  check(isIntIn(l.renewed_mono_ms, 0, Number.MAX_SAFE_INTEGER), "lease.renewed_mono_ms is not an integer >= 0");

  if (r.progress != null) {
    const p = r.progress;
    check(isObject(p), "progress is not an object");
    check(!("message" in p) || isNullableString(p.message), "progress.message is not a string or null");
    check(!("at" in p) || isNullableTimestamp(p.at), "progress.at is not a timestamp or null");
    check(!("count" in p) || isIntIn(p.count, 0, Number.MAX_SAFE_INTEGER), "progress.count is not an integer >= 0");
  }
  if (r.exit != null) check(isExit(r.exit), 'exit is not {"code": N} or {"signal": N}');
  check(!("finished_at" in r) || isNullableTimestamp(r.finished_at), "finished_at is not a timestamp or null");
  if (r.late != null) {
    check(Array.isArray(r.late), "late is not an array");
    check(r.late.every(isObject), "an element of late is not an object");
  }
}

/** Exactly one of `code` and `signal`, an integer. @param {unknown} e */
function isExit(e) {
  if (!isObject(e)) return false;
  const keys = Object.keys(e).filter((k) => k === "code" || k === "signal");
  return keys.length === 1 && Number.isSafeInteger(e[keys[0]]);
}
