// Conformance, writing side: every vector in tests/vectors/write/ (protocol.md 10.2) through
// applyWrite. Records are compared as values of section 4, as 10.2 says.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { applyWrite, classifyRecord, parseTimestamp } from "../index.js";

const dir = fileURLToPath(new URL("../../../tests/vectors/write/", import.meta.url));
const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();

const KEYS = {
  top: ["name", "current", "lease_file", "write", "expect"],
  expect: ["result", "record", "status", "epoch", "late", "lease_file"],
  write: {
    create: ["record"],
    renew: ["epoch", "at", "mono_ms", "running", "child", "progress"],
    acquire: ["epoch", "at", "mono_ms"],
    finish: ["epoch", "at", "status", "reason", "exit", "progress"],
    reap: ["at", "reason"],
    cancel: ["at"],
    lease: ["epoch", "at", "mono_ms", "beats", "beat_at"],
  },
};

const ms = (/** @type {unknown} */ t) => (t == null ? null : parseTimestamp(t));

/** `known` (normalized) plus every other member of `obj` as a JSON value (10.2: at every level). */
function withUnknown(/** @type {any} */ obj, /** @type {Record<string, unknown>} */ known) {
  const out = { ...known };
  for (const k of Object.keys(obj ?? {})) if (!(k in known)) out[k] = obj[k];
  return out;
}
/** @param {any} p */
const progress = (p) =>
  p == null
    ? null
    : withUnknown(p, { message: p.message ?? null, at: ms(p.at), count: p.count ?? 0, rejected: p.rejected ?? 0, extended_until: ms(p.extended_until), probe: p.probe ?? null });

/** A record as a value of section 4: defaults filled in, timestamps as ms, `late[].note` dropped. */
function normalize(/** @type {any} */ input) {
  const c = classifyRecord(input);
  assert.equal(c.kind, "ok", `not a valid record: ${JSON.stringify(c)}`);
  const r = /** @type {any} */ (c.kind === "ok" ? c.record : {});
  const h = r.holder;
  return withUnknown(r, {
    protocol: r.protocol, id: r.id, name: r.name ?? null, argv: r.argv, cwd: r.cwd ?? null,
    created_at: ms(r.created_at), status: r.status, reason: r.reason,
    holder: withUnknown(h, { pid: h.pid, start: h.start, boot_id: h.boot_id, host: h.host, time_ns: h.time_ns ?? null, pid_ns: h.pid_ns ?? null }),
    child: r.child ? withUnknown(r.child, { pid: r.child.pid, start: r.child.start, pgid: r.child.pgid }) : null,
    lease: withUnknown(r.lease, { ...r.lease, renewed_at: ms(r.lease.renewed_at) }),
    progress: progress(r.progress ?? {}),
    exit: r.exit ?? null,
    finished_at: ms(r.finished_at),
    late: (r.late ?? []).map((/** @type {any} */ e) => {
      const { note: _note, ...rest } = e;
      return withUnknown(rest, {
        at: ms(e.at), epoch: e.epoch, status: e.status ?? null, reason: e.reason ?? null, exit: e.exit ?? null, progress: progress(e.progress),
      });
    }),
    meta: r.meta ?? {},
    unique: r.unique ?? null,
  });
}

test("the writing-vector directory has vectors", () => {
  assert.ok(files.length >= 40, `only ${files.length} writing vectors in ${dir}`);
});

for (const file of files) {
  const v = JSON.parse(readFileSync(join(dir, file), "utf8"));
  test(`write vector ${file}: ${v.name}`, () => {
    for (const k of Object.keys(v)) assert.ok(KEYS.top.includes(k), `${file}: unknown key ${k}`);
    for (const k of Object.keys(v.expect)) assert.ok(KEYS.expect.includes(k), `${file}: unknown expect key ${k}`);
    const allowed = /** @type {Record<string, string[]>} */ (KEYS.write)[v.write.kind];
    assert.ok(allowed, `${file}: unknown write kind ${v.write.kind}`);
    for (const k of Object.keys(v.write)) assert.ok(k === "kind" || allowed.includes(k), `${file}: unknown write key ${k}`);

    const got = applyWrite(v.current, v.write, v.lease_file);
    const e = v.expect;
    assert.equal(got.result, e.result, `${file}: ${JSON.stringify(got)}`);
    if (got.result === "refused") {
      assert.equal(got.status, e.status, `${file}: status told to the writer`);
      assert.equal(got.epoch, e.epoch, `${file}: epoch told to the writer`);
      if (e.late === null) assert.equal(got.late, null, file);
      else {
        const want = /** @type {any} */ (e.late);
        const have = /** @type {any} */ (got.late);
        assert.deepEqual(
          { ...have, at: ms(have?.at), progress: progress(have?.progress) },
          { ...want, at: ms(want.at), progress: progress(want.progress) },
          `${file}: late element`,
        );
      }
    }
    assert.deepEqual(normalize(got.record), normalize(e.record), `${file}: the stored record`);
    if ("lease_file" in e) assert.equal(got.leaseFile?.toString("utf8") ?? null, e.lease_file, `${file}: the lease file`);
  });
}
