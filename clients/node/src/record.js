// Reading a record file as protocol.md section 4 defines it: what makes a record unsupported (4.3)
// or corrupt (4.4). Pure: text or a parsed object in, a classification out.

import { parseTimestamp } from "./time.js";
import { parseStrict, Float, JsonError } from "./json.js";

export const MAX_RECORD_BYTES = 1024 * 1024;
export const STATUSES = ["starting", "running", "succeeded", "failed", "cancelled", "lost"];
export const ACTIVE = ["starting", "running"];
export const REASONS = [
  "exited",
  "signaled",
  "start-failed",
  "heartbeat-timeout",
  "probe-failed",
  "holder-signaled",
  "cancelled",
  "worker-exited",
  "pid-reused",
  "lease-expired",
  "host-rebooted",
];
/** The largest process id: pid_t is a signed 32-bit integer. */
const MAX_PID = 2 ** 31 - 1;
/** 4.1: the largest integer every JSON implementation reads exactly. */
const MAX_INT = Number.MAX_SAFE_INTEGER;

/** A record that breaks section 4; `problem` names the field at fault. */
class Corrupt extends Error {}

/**
 * Classify a record by the steps of 4.4: `{ kind: "ok", record }` with `record` the parsed object
 * (timestamps still strings, as in the file), `{ kind: "unsupported", version }`, or
 * `{ kind: "corrupt", problem }`. An object is first serialized compactly, as section 10 says.
 * @param {string | Uint8Array | object} input the file's text or bytes, or an already parsed object
 * @returns {import("../index.js").Classified}
 */
export function classifyRecord(input) {
  let text;
  if (typeof input === "string") text = input;
  else if (input instanceof Uint8Array) {
    if (input.length > MAX_RECORD_BYTES) return corrupt(`record is ${input.length} bytes, above the 1 MiB limit`);
    try {
      // ignoreBOM: keep a byte order mark, so that the parser rejects it (step 3).
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(input);
    } catch {
      return corrupt("record is not valid UTF-8");
    }
  } else text = JSON.stringify(input);
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_RECORD_BYTES) return corrupt(`record is ${bytes} bytes, above the 1 MiB limit`);
  let tree;
  try {
    tree = parseStrict(text);
  } catch (e) {
    if (e instanceof JsonError || e instanceof RangeError) return corrupt(`record is not valid JSON (${e.message})`);
    throw e;
  }
  if (!isObject(tree)) return corrupt("record is not a JSON object");
  const protocol = tree.protocol;
  if (!isIntIn(protocol, 1, Number.MAX_SAFE_INTEGER)) return corrupt("protocol is absent or not an integer >= 1");
  // 4.3: a newer version is unsupported whatever its other fields hold.
  if (/** @type {number} */ (protocol) > 1) return { kind: "unsupported", version: /** @type {number} */ (protocol) };
  try {
    validate(/** @type {Record<string, any>} */ (tree));
  } catch (e) {
    if (e instanceof Corrupt) return corrupt(e.message);
    throw e;
  }
  // The text is strict JSON now, so JSON.parse reads it the same way, into ordinary objects.
  return { kind: "ok", record: JSON.parse(text) };
}

/** @param {string} problem @returns {import("../index.js").Classified} */
function corrupt(problem) {
  return { kind: "corrupt", problem };
}

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Float);
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

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const INT32_MIN = -(2 ** 31);

/**
 * Step 6 of 4.4, field by field. Optional fields may be absent; when present they must have their
 * type, and only fields marked "or null" in 4.1 may be null.
 * @param {Record<string, any>} r
 */
function validate(r) {
  for (const f of ["id", "argv", "created_at", "status", "reason", "holder", "lease"]) required(r, f);
  check(isString(r.id) && ID.test(r.id), "id does not match section 3's pattern");
  check(Array.isArray(r.argv) && r.argv.every(isString), "argv is not an array of strings");
  check(isTimestamp(r.created_at), "created_at is not a timestamp of 4.1");
  check(STATUSES.includes(r.status), `status ${show(r.status)} is not one of ${STATUSES.join(", ")}`);
  check(r.reason === null || REASONS.includes(r.reason), `reason ${show(r.reason)} is not a known reason`);
  for (const f of ["name", "cwd", "unique"]) check(!(f in r) || isNullableString(r[f]), `${f} is not a string or null`);

  check(isObject(r.holder), "holder is not an object");
  const h = r.holder;
  for (const f of ["pid", "start", "boot_id", "host"]) required(h, `holder.${f}`);
  check(isIntIn(h.pid, 1, MAX_PID), `holder.pid ${show(h.pid)} is not a process id`);
  for (const f of ["start", "boot_id", "host"]) check(isString(h[f]), `holder.${f} is not a string`);
  for (const f of ["time_ns", "pid_ns"]) check(!(f in h) || isNullableString(h[f]), `holder.${f} is not a string or null`);

  if ("child" in r && r.child !== null) {
    const c = r.child;
    check(isObject(c), "child is not an object or null");
    check(isIntIn(c.pid, 1, MAX_PID), "child.pid is not a process id");
    check(isIntIn(c.pgid, 1, MAX_PID), "child.pgid is not a process group id");
    check(isString(c.start), "child.start is not a string");
  }

  check(isObject(r.lease), "lease is not an object");
  const l = r.lease;
  for (const f of ["epoch", "interval_ms", "ttl_ms", "renewed_at", "renewed_mono_ms"]) required(l, `lease.${f}`);
  check(isIntIn(l.epoch, 1, MAX_INT), "lease.epoch is not an integer >= 1");
  check(isIntIn(l.interval_ms, 1, MAX_INT), "lease.interval_ms is not an integer >= 1");
  check(isIntIn(l.ttl_ms, 0, MAX_INT), "lease.ttl_ms is not an integer");
  check(l.ttl_ms >= 2 * l.interval_ms, "lease.ttl_ms is below twice lease.interval_ms");
  check(isTimestamp(l.renewed_at), "lease.renewed_at is not a timestamp of 4.1");
  check(isIntIn(l.renewed_mono_ms, 0, MAX_INT), "lease.renewed_mono_ms is not an integer >= 0");

  if ("progress" in r) checkProgress(r.progress, "progress");
  if ("exit" in r && r.exit !== null) check(isExit(r.exit), 'exit is not {"code": N} or {"signal": N}');
  check(!("finished_at" in r) || isNullableTimestamp(r.finished_at), "finished_at is not a timestamp or null");
  if ("late" in r) {
    check(Array.isArray(r.late), "late is not an array");
    r.late.forEach(checkLate);
  }
  if ("meta" in r) {
    check(isObject(r.meta) && Object.values(r.meta).every(isString), "meta is not an object of strings");
  }
}

/** @param {any} p @param {string} where */
function checkProgress(p, where) {
  check(isObject(p), `${where} is not an object`);
  check(!("message" in p) || isNullableString(p.message), `${where}.message is not a string or null`);
  check(!("at" in p) || isNullableTimestamp(p.at), `${where}.at is not a timestamp or null`);
  check(!("count" in p) || isIntIn(p.count, 0, MAX_INT), `${where}.count is not an integer >= 0`);
  // `probe` is for people; a reader ignores one not of its form (4.1), so it is not checked here.
  check(!("rejected" in p) || isIntIn(p.rejected, 0, MAX_INT), `${where}.rejected is not an integer >= 0`);
  check(!("extended_until" in p) || isNullableTimestamp(p.extended_until), `${where}.extended_until is not a timestamp or null`);
}

/** 4.2. @param {any} e @param {number} n */
function checkLate(e, n) {
  const where = `late[${n}]`;
  check(isObject(e), `${where} is not an object`);
  check(isTimestamp(e.at), `${where}.at is not a timestamp of 4.1`);
  check(isIntIn(e.epoch, 0, MAX_INT), `${where}.epoch is not an integer`);
  check(e.status == null || STATUSES.includes(e.status), `${where}.status ${show(e.status)} is not a status`);
  check(e.reason == null || REASONS.includes(e.reason), `${where}.reason ${show(e.reason)} is not a reason`);
  check(e.exit == null || isExit(e.exit), `${where}.exit is not {"code": N} or {"signal": N}`);
  if (e.progress != null) checkProgress(e.progress, `${where}.progress`);
  check(!("note" in e) || isString(e.note), `${where}.note is not a string`);
}

/** @param {unknown} v */
function show(v) {
  return v instanceof Float ? String(v.value) : JSON.stringify(v);
}

/** A closed object: exactly one of `code` and `signal`, a 32-bit signed integer. @param {unknown} e */
function isExit(e) {
  if (!isObject(e)) return false;
  const keys = Object.keys(e);
  return keys.length === 1 && (keys[0] === "code" || keys[0] === "signal") && isIntIn(e[keys[0]], INT32_MIN, MAX_PID);
}
