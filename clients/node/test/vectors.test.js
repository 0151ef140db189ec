// Conformance: every vector in the repository's tests/vectors/ (protocol.md section 10), judged by
// the JavaScript verdict. Vectors added by anyone are picked up without touching this file.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { judge, parseTimestamp } from "../index.js";

const dir = fileURLToPath(new URL("../../../tests/vectors/", import.meta.url));
const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();

const KEYS = {
  top: ["name", "record", "record_base64", "probe", "reader", "expect", "lease_file"],
  probe: ["holder", "start"],
  reader: ["boot_id", "host", "time_ns", "pid_ns", "now_wall", "now_mono_ms"],
  expect: ["verdict", "status", "reason", "rule", "expires_in_ms", "lease", "progress"],
  lease: ["renewed_at", "renewed_mono_ms"],
  progress: ["count", "at"],
};

/** A runner SHOULD reject keys it does not know (section 10): a misspelt key must not test nothing. */
function onlyKnown(obj, allowed, where) {
  for (const k of Object.keys(obj)) assert.ok(allowed.includes(k), `${where}: unknown key ${k}`);
}

test("the vector directory has vectors", () => {
  assert.ok(files.length >= 90, `only ${files.length} vectors in ${dir}`);
});

const names = new Set();
for (const file of files) {
  const v = JSON.parse(readFileSync(join(dir, file), "utf8"));
  test(`vector ${file}: ${v.name}`, () => {
    onlyKnown(v, KEYS.top, file);
    onlyKnown(v.probe, KEYS.probe, `${file} probe`);
    onlyKnown(v.reader, KEYS.reader, `${file} reader`);
    for (const k of KEYS.reader) assert.ok(k in v.reader, `${file} reader: missing ${k}`);
    onlyKnown(v.expect, KEYS.expect, `${file} expect`);
    onlyKnown(v.expect.lease ?? {}, KEYS.lease, `${file} expect.lease`);
    onlyKnown(v.expect.progress ?? {}, KEYS.progress, `${file} expect.progress`);
    assert.ok(("record" in v) !== ("record_base64" in v), `${file}: exactly one of record and record_base64`);
    assert.ok(!names.has(v.name), `duplicate vector name ${v.name}`);
    names.add(v.name);

    const nowMs = parseTimestamp(v.reader.now_wall);
    assert.notEqual(nowMs, null, `${file}: reader.now_wall is not a timestamp`);
    const facts = {
      probe: v.probe.holder === "gone" ? { holder: "gone" } : { holder: "alive", start: v.probe.start ?? null },
      bootId: v.reader.boot_id,
      host: v.reader.host,
      timeNs: v.reader.time_ns,
      pidNs: v.reader.pid_ns,
      monoMs: v.reader.now_mono_ms,
      leaseFile: v.lease_file,
    };
    const record = "record_base64" in v ? new Uint8Array(Buffer.from(v.record_base64, "base64")) : v.record;
    const got = judge(record, facts, nowMs);
    const e = v.expect;
    const detail = `${file}: got ${JSON.stringify({ ...got, record: undefined })}`;
    assert.equal(got.verdict, e.verdict, detail);
    if ("rule" in e) assert.equal(got.rule, e.rule, detail);
    if ("status" in e) assert.equal(got.status, e.status, detail);
    if ("reason" in e) assert.equal(got.reason, e.reason, detail);
    if ("expires_in_ms" in e) assert.equal(got.expiresInMs, e.expires_in_ms, detail);
    // 10.1: the record after the fold of 6.5; timestamps compared as milliseconds.
    const folded = "record" in got ? got.record : undefined;
    for (const [k, want] of Object.entries(e.lease ?? {})) {
      const have = folded?.lease[k];
      if (k === "renewed_at") assert.equal(parseTimestamp(have), parseTimestamp(want), `${detail} lease.${k}`);
      else assert.equal(have, want, `${detail} lease.${k}`);
    }
    for (const [k, want] of Object.entries(e.progress ?? {})) {
      const have = folded?.progress?.[k] ?? (k === "count" ? 0 : null);
      if (k === "at") assert.equal(have === null ? null : parseTimestamp(have), want === null ? null : parseTimestamp(want), `${detail} progress.${k}`);
      else assert.equal(have, want, `${detail} progress.${k}`);
    }
    if (e.verdict === "corrupt") assert.ok(got.problem, `${file}: a corrupt verdict names its problem`);
  });
}
