// The verdict of protocol.md section 7 in pure JavaScript: a function of the record, the reader's
// probe of the holder, the reader's identity and its clocks. No I/O, so readers that must not
// spawn a process can judge a record they read themselves, and the conformance vectors can drive it.

import { classifyRecord, ACTIVE } from "./record.js";
import { foldLeaseFile } from "./leasefile.js";
import { parseTimestamp } from "./time.js";

/** 7.3: the allowance for clock skew between hosts on the wall rule. */
export const SKEW_ALLOWANCE_MS = 30_000;

/**
 * @param {import("../index.js").LeaseRecord | string | Uint8Array} record
 * @param {import("../index.js").ReaderFacts} facts
 * @param {number} nowMs the reader's wall time, milliseconds since the Unix epoch
 * @returns {import("../index.js").Verdict}
 */
export function judge(record, facts, nowMs) {
  const c = classifyRecord(record);
  if (c.kind === "corrupt") return { verdict: "corrupt", problem: c.problem };
  if (c.kind === "unsupported") return { verdict: "unsupported", rule: "R0", version: c.version };
  const r = foldLeaseFile(c.record, facts.leaseFile);
  if (!ACTIVE.includes(r.status)) {
    return { verdict: "terminal", rule: "R1", status: r.status, reason: r.reason, record: r };
  }
  /**
   * @param {"R2" | "R3" | "R3a" | "R4" | "R5" | "R6"} rule
   * @param {"lease-expired" | "host-rebooted" | "worker-exited" | "pid-reused"} reason
   * @returns {import("../index.js").Verdict}
   */
  const lost = (rule, reason) => ({ verdict: "lost", rule, status: "lost", reason, record: r });
  const renewedAt = /** @type {number} */ (parseTimestamp(r.lease.renewed_at));
  const ttl = r.lease.ttl_ms;
  const wallLeft = ttl + SKEW_ALLOWANCE_MS - (nowMs - renewedAt);
  /** @param {"R2" | "R3a" | "R7"} rule @param {number} expiresInMs @returns {import("../index.js").Verdict} */
  const active = (rule, expiresInMs) => ({
    verdict: "active",
    rule,
    status: /** @type {"starting" | "running"} */ (r.status),
    reason: null,
    expiresInMs,
    expiresAt: new Date(nowMs + expiresInMs),
    record: r,
  });

  if (r.holder.host !== facts.host) {
    // R2: the pid means nothing on another host; only the lease counts, on wall time.
    return wallLeft < 0 ? lost("R2", "lease-expired") : active("R2", wallLeft);
  }
  if (r.holder.boot_id !== facts.bootId) return lost("R3", "host-rebooted");
  const sameClock =
    (r.holder.time_ns ?? null) === (facts.timeNs ?? null) && facts.monoMs >= r.lease.renewed_mono_ms;
  // 7.3: age > ttl is expired; both rules reduce to "now is past the expiry".
  // Differences first: every operand is at most 2^53-1 (4.1), so they are exact, where a sum such
  // as renewed_mono_ms + ttl_ms may not be.
  const expiresInMs = sameClock ? ttl - (facts.monoMs - r.lease.renewed_mono_ms) : wallLeft;
  // R3a: pids mean something only in the pid namespace that numbered them, known on both sides.
  const pidNs = r.holder.pid_ns ?? null;
  if (pidNs === null || pidNs !== (facts.pidNs ?? null)) {
    return expiresInMs < 0 ? lost("R3a", "lease-expired") : active("R3a", expiresInMs);
  }
  if (facts.probe.holder === "gone") return lost("R4", "worker-exited");
  const start = facts.probe.start ?? null;
  if (start !== null && start !== r.holder.start) return lost("R5", "pid-reused");
  if (expiresInMs < 0) return lost("R6", "lease-expired");
  return active("R7", expiresInMs);
}
