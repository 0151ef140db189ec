// The reader's side of the verdict on this machine (protocol.md 7.1 and 8): a probe of the holder's
// pid, the boot id, the host name, the time namespace and the monotonic clock. Linux only (it reads
// /proc); elsewhere use the Tether class, which asks the CLI.

import { readFileSync, readlinkSync, openSync, readSync, closeSync, constants } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { judge } from "./judge.js";

/**
 * @param {number} pid
 * @returns {import("../index.js").Probe}
 */
export function probePid(pid) {
  if (!Number.isInteger(pid) || pid < 1) return { holder: "gone" };
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (/** @type {NodeJS.ErrnoException} */ (e).code !== "EPERM") return { holder: "gone" };
  }
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return { holder: "alive", start: null };
  }
  // Fields are counted after the last `)`: the command name may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return { holder: "gone" };
  const start = fields[19]; // field 22 of the line; fields[0] is field 3
  return { holder: "alive", start: /^\d+$/.test(start ?? "") ? `linux:${start}` : null };
}

/** @param {string} path */
function readOr(path, fallback = "unknown") {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return fallback;
  }
}

/**
 * The pid namespace this process's pids are numbered in (protocol.md 8), or null when it cannot be
 * told: `/proc/self/ns/pid`, but only if `/proc` belongs to that namespace (`NSpid` has one entry,
 * our own pid). A `/proc` of a parent namespace numbers every pid differently.
 * @returns {string | null}
 */
export function pidNamespace() {
  try {
    const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("NSpid:"));
    const ids = (line ?? "").slice("NSpid:".length).trim().split(/\s+/);
    if (ids.length !== 1 || ids[0] !== String(process.pid)) return null;
    const ns = readlinkSync("/proc/self/ns/pid");
    return /^pid:\[\d+\]$/.test(ns) ? ns : null;
  } catch {
    return null;
  }
}

/**
 * The facts for judging a record whose holder is `pid`, read now.
 * `monoMs` is CLOCK_MONOTONIC: libuv's hrtime reads that clock on Linux.
 * @param {number} pid
 * @returns {import("../index.js").ReaderFacts}
 */
export function localFacts(pid) {
  let timeNs = null;
  try {
    timeNs = readlinkSync("/proc/self/ns/time");
  } catch {
    /* no time namespaces here: null, as the holder records it */
  }
  return {
    probe: probePid(pid),
    bootId: readOr("/proc/sys/kernel/random/boot_id"),
    host: hostname(),
    timeNs,
    pidNs: pidNamespace(),
    monoMs: Number(process.hrtime.bigint() / 1_000_000n),
  };
}

/** Reads a file without following a symbolic link; null when it is missing. @param {string} path */
function readNoFollow(path) {
  let fd;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if (/** @type {NodeJS.ErrnoException} */ (e).code === "ENOENT") return null;
    throw e;
  }
  try {
    const chunks = [];
    const buf = Buffer.alloc(65536);
    for (let n; (n = readSync(fd, buf)) > 0; ) chunks.push(Buffer.from(buf.subarray(0, n)));
    return Buffer.concat(chunks);
  } finally {
    closeSync(fd);
  }
}

/**
 * Judges one job from its files, in this process: no tether binary, no child process. Read-only:
 * a job found lost is reported, not recorded (the CLI records it the next time it reads the job).
 * The clock is read before the record, as the CLI does, so a reader stalled between the two can
 * only see the lease younger than it is, never reap a healthy job.
 * @param {string} dir the state directory
 * @param {string} id
 * @returns {import("../index.js").Verdict | null} null when there is no such record
 */
export function judgeLocal(dir, id) {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw new RangeError(`not a job id: ${JSON.stringify(id)}`);
  const monoMs = Number(process.hrtime.bigint() / 1_000_000n);
  const nowMs = Date.now();
  const text = readNoFollow(join(dir, "jobs", `${id}.json`));
  if (text === null) return null;
  const lease = readNoFollow(join(dir, "jobs", `${id}.lease`));
  /** @type {any} */
  let pid = 0;
  try {
    pid = JSON.parse(text.toString("utf8"))?.holder?.pid;
  } catch {
    /* corrupt: judge says so */
  }
  const facts = { ...localFacts(typeof pid === "number" ? pid : 0), monoMs, leaseFile: lease ?? undefined };
  return judge(text, facts, nowMs);
}
