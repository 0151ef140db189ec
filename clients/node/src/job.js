// The CLI's JSON (protocol.md 9.1, snake_case, timestamps as strings) as JavaScript values:
// camelCase, timestamps as Dates, durations in milliseconds. The CLI's object stays in `raw`.

import { parseTimestamp } from "./time.js";

/** @param {unknown} t */
function date(t) {
  const ms = parseTimestamp(t);
  return ms === null ? null : new Date(ms);
}

/**
 * @param {any} j one job object of `tether status --json` (or `result --json`)
 * @returns {import("../index.js").Job}
 */
export function toJob(j) {
  const l = j.lease ?? {};
  const h = j.holder ?? {};
  const p = j.progress ?? {};
  return {
    id: j.id,
    name: j.name ?? null,
    status: j.status,
    reason: j.reason ?? null,
    active: j.status === "starting" || j.status === "running",
    exit: j.exit ?? null,
    argv: j.argv ?? [],
    cwd: j.cwd ?? null,
    meta: j.meta ?? {},
    unique: j.unique ?? null,
    createdAt: /** @type {Date} */ (date(j.created_at)),
    finishedAt: date(j.finished_at),
    progress: { message: p.message ?? null, at: date(p.at), count: p.count ?? 0 },
    lease: {
      epoch: l.epoch,
      intervalMs: l.interval_ms,
      ttlMs: l.ttl_ms,
      renewedAt: date(l.renewed_at),
      expiresAt: date(l.expires_at),
    },
    holder: { pid: h.pid, start: h.start, bootId: h.boot_id, host: h.host, timeNs: h.time_ns ?? null, pidNs: h.pid_ns ?? null },
    child: j.child ? { pid: j.child.pid, start: j.child.start, pgid: j.child.pgid } : null,
    late: (j.late ?? []).map((/** @type {any} */ e) => ({ ...e, at: date(e.at) })),
    rule: j.rule ?? null,
    ...(Array.isArray(j.log_tail) ? { logTail: j.log_tail } : {}),
    raw: j,
  };
}

/**
 * `status --json` prints an array; before issue 15 it printed a bare object for a single id.
 * @param {string} stdout
 * @returns {any[]}
 */
export function jobsOf(stdout) {
  const text = stdout.trim();
  if (text === "") return [];
  const v = JSON.parse(text);
  return Array.isArray(v) ? v : [v];
}
