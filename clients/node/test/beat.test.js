// beat(): a file beat from Node, in a real `tether run --heartbeat file` job and on a plain file.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beat } from "../index.js";
import { scratch } from "./support.js";

const index = fileURLToPath(new URL("../index.js", import.meta.url));

test("outside a job beat() does nothing and says so", () => {
  assert.equal(beat({ env: {} }), false);
  assert.equal(beat({ message: "x", env: {} }), false);
});

test("a message replaces the file's first line; a bare beat only moves its times", async () => {
  const root = mkdtempSync(join(tmpdir(), "tether-beat-"));
  try {
    const file = join(root, "heartbeat");
    writeFileSync(file, "an older and much longer message\nsecond line\n");
    const env = { TETHER_HEARTBEAT_FILE: file };
    assert.equal(beat({ message: "step 2\nof 3\u0007", env }), true);
    assert.equal(readFileSync(file, "utf8"), "step 2 of 3\n");
    const before = statSync(file, { bigint: true }).mtimeNs;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(beat({ env }), true);
    assert.ok(statSync(file, { bigint: true }).mtimeNs > before, "the bare beat did not change the mtime");
    assert.equal(readFileSync(file, "utf8"), "step 2 of 3\n", "a bare beat keeps the message");
    beat({ message: "é".repeat(2000), env });
    assert.ok(Buffer.byteLength(readFileSync(file, "utf8")) <= 1025);
    assert.equal(beat({ message: "long step", extendMs: 60_000, env }), true);
    assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), { message: "long step", extend: 60_000 });
    beat({ extendMs: 5, env });
    assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), { extend: 5 });
    assert.throws(() => beat({ extendMs: -1, env }), RangeError);
    assert.throws(() => beat({ extendMs: 1.5, env }), RangeError);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("inside a file-heartbeat job, beats keep the job alive and carry its progress", async () => {
  const s = scratch();
  try {
    // Six beats 200 ms apart with a 1 s ttl: the job lives 1.2 s only because the beats arrive.
    const script = `
      import { beat } from ${JSON.stringify(index)};
      for (let i = 1; i <= 6; i++) {
        await new Promise((r) => setTimeout(r, 200));
        if (!beat({ message: "step " + i + " of 6" })) process.exit(9);
      }`;
    await s.t.run([process.execPath, "--input-type=module", "-e", script], {
      id: "beats",
      heartbeat: "file",
      ttlMs: 1000,
      intervalMs: 100,
    });
    const done = await s.t.wait("beats", { timeoutMs: 30_000 });
    assert.equal(done.status, "succeeded", JSON.stringify(done.raw));
    assert.equal(done.progress.message, "step 6 of 6");
    assert.equal(done.progress.count, 6, "each beat() is one beat");
  } finally {
    await s.done();
  }
});

test("inside a file-heartbeat job that stops beating, the job is lost", async () => {
  const s = scratch();
  try {
    const script = `
      import { beat } from ${JSON.stringify(index)};
      beat({ message: "started" });
      setInterval(() => {}, 1000); // alive, but no more beats: a wedge
    `;
    const job = await s.t.run([process.execPath, "--input-type=module", "-e", script], {
      id: "wedged",
      heartbeat: "file",
      ttlMs: 800,
      intervalMs: 100,
      graceMs: 200,
    });
    s.track(job.childPid);
    const done = await s.t.wait("wedged", { timeoutMs: 30_000 });
    assert.equal(done.status, "lost");
    assert.equal(done.reason, "heartbeat-timeout");
    assert.equal(done.progress.message, "started");
  } finally {
    await s.done();
  }
});

test("beat({ extendMs }) declares a silence longer than the ttl; the job then succeeds", async () => {
  const s = scratch();
  try {
    // ttl 1 s; the job beats, declares a 4 s silence, is silent 2.5 s, beats again and ends.
    const script = `
      import { beat } from ${JSON.stringify(index)};
      beat({ message: "before the silence" });
      beat({ message: "a long step", extendMs: 4000 });
      await new Promise((r) => setTimeout(r, 2500));
      beat({ message: "after the silence" });`;
    await s.t.run([process.execPath, "--input-type=module", "-e", script], {
      id: "silent",
      heartbeat: "file",
      ttlMs: 1000,
      intervalMs: 100,
    });
    const done = await s.t.wait("silent", { timeoutMs: 30_000 });
    assert.equal(done.status, "succeeded", JSON.stringify(done.raw));
    assert.equal(done.progress.message, "after the silence");
    assert.equal(done.progress.count, 3, "each beat() is one beat");
  } finally {
    await s.done();
  }
});
