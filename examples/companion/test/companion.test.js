// The seed's faults injected into the companion pattern, and its three symptoms asserted gone:
//   1. `status --wait` returns promptly with the truth (it used to poll a dead job to its timeout);
//   2. a new task for the session is never blocked by a dead one ("Task X is still running");
//   3. `result` and `status` agree (result said "No job found" while status said "running").

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { TaskBusy } from "../companion.mjs";
import { world, kill, alive, sleep, memoryCgroup, tetherBin } from "./support.js";

/** Waits for the task and asserts the three symptoms are gone. Returns the ended job. */
async function symptomsGone(w, id, session, want, promptMs) {
  const t0 = Date.now();
  const ended = await w.app.waitTask(id, 60_000);
  const tookMs = Date.now() - t0;
  assert.equal(ended.status, want.status, JSON.stringify(ended.raw));
  assert.equal(ended.reason, want.reason);
  assert.ok(tookMs < promptMs, `1: wait took ${tookMs} ms (bound ${promptMs} ms)`);
  const [status, result] = [await w.app.status(id), await w.app.result(id)];
  assert.equal(status?.status, result.status, "3: status and result disagree");
  assert.equal(status?.reason, result.reason, "3: status and result disagree on the reason");
  assert.deepEqual(status?.exit, result.exit);
  assert.equal(await w.app.activeTask(session), null, "the dead task still counts as active");
  const next = await w.app.startTask(session, { turns: 1 }); // 2: never TaskBusy
  w.track(next.childPid);
  return { ended, next };
}

/** Starts a task and waits for its first completed turn. */
async function started(w, session, turns) {
  const job = await w.app.startTask(session, { turns });
  w.track(job.childPid);
  for (let i = 0; i < 500; i++) {
    const s = await w.app.status(job.id);
    if (s && s.progress.count >= 1) return job;
    await sleep(20);
  }
  assert.fail("the task never completed a turn");
}

test("a healthy task: succeeded with its output, status and result agree", async () => {
  const w = await world();
  try {
    const job = await w.app.startTask("s1", { turns: 3 });
    assert.deepEqual(job.record.meta, { session: "s1", kind: "task" });
    const ended = await w.app.waitTask(job.id);
    assert.equal(ended.status, "succeeded");
    assert.equal(ended.progress.message, "turn 3/3 done");
    const r = await w.app.result(job.id);
    assert.ok(r.logTail?.includes("result: 3 turns done"), JSON.stringify(r.logTail));
  } finally {
    await w.done();
  }
});

test("one active task per session, enforced by tether", async () => {
  const w = await world();
  try {
    const first = await started(w, "s1", 200);
    await assert.rejects(w.app.startTask("s1"), (e) => e instanceof TaskBusy && e.holder === first.id);
    assert.equal((await w.app.activeTask("s1"))?.id, first.id);
    const other = await w.app.startTask("s2", { turns: 1 });
    assert.equal((await w.app.waitTask(other.id)).status, "succeeded");
  } finally {
    await w.done();
  }
});

test("fault: the worker is SIGKILLed mid-task", async () => {
  const w = await world({ ttlMs: 20_000 });
  try {
    const job = await started(w, "s1", 200);
    await kill(job.childPid);
    // The ttl is 20 s: anything well under it means the death was seen, not waited out.
    const { ended } = await symptomsGone(w, job.id, "s1", { status: "failed", reason: "signaled" }, 5000);
    assert.deepEqual(ended.exit, { signal: 9 });
  } finally {
    await w.done();
  }
});

test("fault: the worker's wrapper is SIGKILLed (nothing is left to record the end)", async () => {
  const w = await world({ ttlMs: 20_000 });
  try {
    const job = await started(w, "s1", 200);
    await kill(job.holderPid);
    await symptomsGone(w, job.id, "s1", { status: "lost", reason: "worker-exited" }, 5000);
    for (let i = 0; i < 100 && alive(job.childPid); i++) await sleep(20);
    assert.equal(alive(job.childPid), false, "the worker outlived its wrapper");
  } finally {
    await w.done();
  }
});

test("fault: the worker is OOM-killed in a memory-limited cgroup", async (t) => {
  const cg = memoryCgroup(64);
  if (!cg) {
    if (process.env.CI === "true") assert.fail("no memory cgroup can be made here (cgroup v1 memory or v2 memory.max)");
    return t.todo("no memory cgroup can be made here; the SIGKILL test is the stand-in (the OOM killer sends SIGKILL)");
  }
  const w = await world({ ttlMs: 20_000 });
  try {
    const job = await w.app.startTask("s1", { hogMb: 1024, wrap: cg.wrap });
    w.track(job.childPid);
    const { ended } = await symptomsGone(w, job.id, "s1", { status: "failed", reason: "signaled" }, 15_000);
    assert.deepEqual(ended.exit, { signal: 9 }, "the OOM killer's SIGKILL");
    const r = await w.app.result(job.id);
    assert.ok(!r.logTail?.some((l) => l.includes("was not killed")), "the worker was not OOM-killed");
  } finally {
    await w.done();
    cg.remove();
  }
});

test("fault: the broker is wedged (accepts, never answers); the worker hangs alive", async () => {
  const w = await world({ answer: 2, ttlMs: 1500 });
  try {
    const job = await w.app.startTask("s1", { turns: 5 });
    w.track(job.childPid);
    // Caught one ttl after the last completed turn: the lease, not the pid, tells.
    const { ended, next } = await symptomsGone(w, job.id, "s1", { status: "lost", reason: "heartbeat-timeout" }, 15_000);
    assert.equal(ended.progress.message, "turn 2/5 done", "the last real progress is kept");
    for (let i = 0; i < 250 && alive(job.childPid); i++) await sleep(20);
    assert.equal(alive(job.childPid), false, "the hung worker was not stopped");
    await w.app.cancel(next.id); // the broker is still wedged: the new task would hang too
  } finally {
    await w.done();
  }
});

// A probe of the broker (issue 16) tells a wedge from a silence: the ttl can be long enough for a
// silent phase, and a wedged broker is still caught within failures x (every + timeout).
const PROBE = { everyMs: 500, timeoutMs: 2000, failures: 3 };

test("fault: the broker is wedged; a probe catches it long before the 60 s ttl", async () => {
  const w = await world({ answer: 1, ttlMs: 60_000, probe: PROBE });
  try {
    const job = await w.app.startTask("s1", { turns: 5 });
    w.track(job.childPid);
    // Bound: 3 x (0.5 s + 2 s) = 7.5 s, doubled for a loaded machine; far below the ttl.
    await symptomsGone(w, job.id, "s1", { status: "lost", reason: "probe-failed" }, 15_000);
    for (let i = 0; i < 250 && alive(job.childPid); i++) await sleep(20);
    assert.equal(alive(job.childPid), false, "the hung worker was not stopped");
  } finally {
    await w.done();
  }
});

test("no fault: a healthy broker with turns far longer than the probe period is never killed", async () => {
  // Each turn is a 4 s silence for the beats; the probes are answered throughout.
  const w = await world({ delayMs: 4000, ttlMs: 60_000, probe: PROBE });
  try {
    const job = await w.app.startTask("s1", { turns: 2 });
    w.track(job.childPid);
    const ended = await w.app.waitTask(job.id, 60_000);
    assert.equal(ended.status, "succeeded", JSON.stringify(ended.raw));
    assert.equal(ended.progress.message, "turn 2/2 done");
  } finally {
    await w.done();
  }
});

test("fault: the app server crashes while its task runs; a new app sees the truth", async () => {
  const w = await world({ ttlMs: 5000 });
  try {
    // The app process starts a task, prints its id, then waits on it, as the seed's companion did.
    const companion = fileURLToPath(new URL("../companion.mjs", import.meta.url));
    const script = `
      import { Companion } from ${JSON.stringify(companion)};
      import { Tether } from ${JSON.stringify(fileURLToPath(new URL("../../../clients/node/index.js", import.meta.url)))};
      const app = new Companion({ tether: new Tether({ bin: ${JSON.stringify(tetherBin())} }), broker: ${JSON.stringify(w.socket)} });
      const job = await app.startTask("s1", { turns: 20 });
      console.log(job.id);
      await app.waitTask(job.id);`;
    const server = spawn(process.execPath, ["--input-type=module", "-e", script], { env: w.env, stdio: ["ignore", "pipe", "inherit"] });
    const id = await new Promise((resolve) => server.stdout.once("data", (b) => resolve(String(b).trim())));
    await kill(server.pid ?? 0);
    const s = await w.app.status(id);
    assert.equal(s?.status, "running", "the task goes on without the app");
    w.track(s?.child?.pid);
    const ended = await w.app.waitTask(id, 60_000);
    assert.equal(ended.status, "succeeded");
    assert.equal((await w.app.result(id)).status, "succeeded");
    assert.equal(await w.app.activeTask("s1"), null);
  } finally {
    await w.done();
  }
});
