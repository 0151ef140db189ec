// The mapping from the CLI's exit codes and error kinds to classes. Exit 13 needs a job held on
// another host of an etcd cluster (tests/etcd_hosts.rs makes one with namespaces and root), so it is
// checked here on the CLI's exact error line; the other codes are also reached through the real
// binary in tether.test.js. The tables are checked against the CLI's one place for exit codes
// (src/cli/exit.rs), its JSON schema and index.d.ts, which are all written by hand.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as api from "../index.js";
import * as errors from "../src/errors.js";

const { errorFor, KIND_BY_CODE } = errors;
const { TetherError, HolderUnreachableError, CancelRefusedError } = api;
const repoFile = (/** @type {string} */ p) => readFileSync(new URL(`../../../${p}`, import.meta.url), "utf8");

test("exit 13 from cancel is HolderUnreachableError, kind holder-unreachable", () => {
  const message =
    "job j1: its holder on host a did not answer the cancel request within 3.0s (stopped, or cut off from etcd?); the request stands";
  const line = JSON.stringify({ error: "holder-unreachable", code: 13, message });
  const e = errorFor(13, ["cancel", "--json", "j1"], `${line}\n`);
  assert.ok(e instanceof HolderUnreachableError && e instanceof TetherError);
  assert.ok(!(e instanceof CancelRefusedError));
  assert.equal(e.name, "HolderUnreachableError");
  assert.equal(e.code, 13);
  assert.equal(e.kind, "holder-unreachable");
  assert.equal(e.message, message);
  // Without --json (the text form), the code alone decides the class and the kind.
  const t = errorFor(13, ["cancel", "j1"], `tether: ${message}\n`);
  assert.ok(t instanceof HolderUnreachableError);
  assert.equal(t.kind, "holder-unreachable");
  assert.equal(t.message, message);
});

test("every kind the CLI has gets a class of its own; unknown codes a plain TetherError", () => {
  for (const [code, kind] of Object.entries(KIND_BY_CODE)) {
    const e = errorFor(Number(code), ["x"], JSON.stringify({ error: kind, code: Number(code), message: "m" }));
    assert.notEqual(e.constructor, TetherError, `exit ${code} (${kind}) has no class`);
    assert.equal(e.kind, kind);
    assert.equal(e.code, Number(code));
  }
  const e = errorFor(99, ["x"], JSON.stringify({ error: "something-new", code: 99, message: "m" }));
  assert.equal(e.constructor, TetherError);
  assert.equal(e.kind, "something-new");
  assert.equal(new TetherError("no binary").kind, null);
});

test("the kinds and codes agree with src/cli/exit.rs, the CLI's JSON schema and index.d.ts", () => {
  // src/cli/exit.rs: `pub const NAME: i32 = N;` and `Kind::Variant => NAME,` (Variant in kebab-case on the wire).
  const rs = repoFile("src/cli/exit.rs");
  const consts = Object.fromEntries([...rs.matchAll(/pub const (\w+): i32 = (\d+);/g)].map((m) => [m[1], Number(m[2])]));
  const fromRust = Object.fromEntries(
    [...rs.matchAll(/Kind::(\w+) => ([A-Z_]+),/g)].map((m) => [
      consts[m[2]],
      m[1].replace(/(?<!^)([A-Z])/g, "-$1").toLowerCase(),
    ]),
  );
  assert.ok(Object.keys(fromRust).length >= 13, "src/cli/exit.rs: the Kind => code table was not found");
  assert.deepEqual(KIND_BY_CODE, fromRust);

  const schema = JSON.parse(repoFile("schema/cli-output.schema.json"));
  const schemaKinds = JSON.stringify(schema).match(/"error":\{"enum":(\[[^\]]*\])/);
  assert.ok(schemaKinds, "schema/cli-output.schema.json: no enum of error kinds");
  assert.deepEqual(JSON.parse(schemaKinds[1]).sort(), Object.values(KIND_BY_CODE).sort());

  const dts = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
  const union = /export type ErrorKind =([^;]*);/.exec(dts);
  assert.ok(union, "index.d.ts: no ErrorKind type");
  const declared = [...union[1].matchAll(/"([a-z-]+)"/g)].map((m) => m[1]);
  assert.deepEqual(declared.sort(), Object.values(KIND_BY_CODE).sort());
});

test("every error class of src/errors.js is exported by the package (and so declared in index.d.ts)", () => {
  const classes = Object.entries(errors).filter(([, v]) => typeof v === "function" && (v === TetherError || v.prototype instanceof TetherError));
  assert.ok(classes.length >= 14);
  for (const [name, Class] of classes) assert.equal(/** @type {any} */ (api)[name], Class, `${name} is not exported by index.js`);
});
