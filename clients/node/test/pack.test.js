// `npm pack` makes a package a project can install: README, types, licenses, sources, nothing else,
// and it imports and judges from its unpacked files with no dependencies installed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, readdirSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = fileURLToPath(new URL("..", import.meta.url));

test("npm pack: the tarball holds the README, types and licenses, and works when installed", () => {
  const root = mkdtempSync(join(tmpdir(), "tether-pack-"));
  try {
    const out = execFileSync("npm", ["pack", "--json", "--pack-destination", root], { cwd: pkg, encoding: "utf8" });
    const [info] = JSON.parse(out);
    const files = info.files.map((/** @type {{path: string}} */ f) => f.path).sort();
    for (const f of ["README.md", "index.d.ts", "index.js", "LICENSE-MIT", "LICENSE-APACHE", "package.json", "src/judge.js"]) {
      assert.ok(files.includes(f), `${f} missing from ${files.join(", ")}`);
    }
    assert.ok(!files.some((/** @type {string} */ f) => f.startsWith("test/") || f.startsWith("node_modules/")), files.join(", "));
    // Install it as a project would, offline, from the tarball alone.
    const app = join(root, "app");
    mkdirSync(join(app, "node_modules", "tether-lease"), { recursive: true });
    execFileSync("tar", ["-xzf", join(root, info.filename), "-C", join(app, "node_modules", "tether-lease"), "--strip-components=1"]);
    writeFileSync(join(app, "package.json"), '{ "type": "module" }');
    const script = `import { judge, Tether } from "tether-lease";
      const v = judge("{}", { probe: { holder: "gone" }, bootId: "b", host: "h", timeNs: null, monoMs: 0 }, 0);
      console.log(v.verdict, typeof Tether);`;
    const ran = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: app, encoding: "utf8" });
    assert.equal(ran.trim(), "corrupt function");
    assert.ok(readdirSync(join(app, "node_modules")).length === 1, "the package pulled in dependencies");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
