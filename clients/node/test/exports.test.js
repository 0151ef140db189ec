// index.d.ts is hand-written: every runtime export must be declared there, and every declared
// value must exist at runtime. (`npm run typecheck` checks the types themselves.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as api from "../index.js";

test("index.d.ts declares exactly the runtime exports", () => {
  const dts = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
  const declared = [...dts.matchAll(/^export (?:declare )?(?:function|class|const) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual([...new Set(declared)].sort(), Object.keys(api).sort());
});
