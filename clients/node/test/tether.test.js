// The Tether class against real jobs: a real tether binary, real processes, real signals.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Tether,
  TetherNotFound,
  JobActiveError,
  WaitTimeoutError,
  IdTakenError,
  CommandNotFoundError,
  JobNotFoundError,
  UsageError,
  UniqueHeldError,
  judgeLocal,
} from "../index.js";
import { scratch, killAndWait, alive, sleep, hasCommand } from "./support.js";

test("a clean job: wait resolves succeeded, result has its output", async () => {
  const s = scratch();
  try {
    const job = await s.t.run(["sh", "-c", "echo hello from the job; sleep 0.3"], { id: "clean", name: "clean one" });
    assert.equal(job.id, "clean");
    assert.ok(job.holderPid > 1 && job.childPid > 1, JSON.stringify(job));
    assert.equal(job.record.status, "running");
    assert.equal(job.record.name, "clean one");
    assert.ok(job.record.createdAt instanceof Date);
    const done = await s.t.wait("clean", { timeoutMs: 30_000 });
    assert.equal(done.status, "succeeded");
    assert.deepEqual(done.exit, { code: 0 });
    assert.ok(done.finishedAt instanceof Date);
    const r = await s.t.result("clean");
    assert.equal(r.status, "succeeded");
    assert.ok(r.logTail?.includes("hello from the job"), JSON.stringify(r.logTail));
  } finally {
    await s.done();
  }
});

test("a SIGKILLed holder: wait resolves lost well within the ttl", async () => {
  const s = scratch();
  try {
    const job = await s.t.run(["sleep", "60"], { id: "victim", ttlMs: 20_000, intervalMs: 1000 });
    s.track(job.childPid);
    const waiting = s.t.wait("victim", { timeoutMs: 30_000 });
    await sleep(200); // let the waiter start watching before the kill
    const killedAt = Date.now();
    process.kill(job.holderPid, "SIGKILL");
    const lost = await waiting;
    const tookMs = Date.now() - killedAt;
    assert.equal(lost.status, "lost");
    assert.equal(lost.reason, "worker-exited");
    // The ttl is 20 s: resolving in under 5 s means the death was seen, not the lease running out.
    assert.ok(tookMs < 5000, `wait took ${tookMs} ms after the SIGKILL`);
  } finally {
    await s.done();
  }
});

test("an unknown id: status is null, result and wait throw JobNotFoundError", async () => {
  const s = scratch();
  try {
    assert.equal(await s.t.status("nope"), null, "before the state directory exists");
    assert.deepEqual(await s.t.list(), []);
    await s.t.run(["true"], { id: "other" });
    assert.equal(await s.t.status("nope"), null);
    await assert.rejects(s.t.result("nope"), (e) => e instanceof JobNotFoundError && e.code === 6 && e.kind === "no-such-job");
    await assert.rejects(s.t.wait("nope"), (e) => e instanceof JobNotFoundError && e.code === 6);
  } finally {
    await s.done();
  }
});

test("a missing binary is a TetherNotFound the caller can fall back on", async () => {
  const t = new Tether({ bin: "/nonexistent/tether" });
  await assert.rejects(t.status("x"), (e) => e instanceof TetherNotFound && /TETHER_BIN/.test(e.message));
  const fromEnv = new Tether({ env: { ...process.env, TETHER_BIN: "/nonexistent/tether-env" } });
  assert.equal(fromEnv.bin, "/nonexistent/tether-env");
  const onPath = new Tether({ env: { PATH: "/nonexistent" } });
  assert.equal(onPath.bin, "tether");
  await assert.rejects(onPath.list(), TetherNotFound);
});

test("wait: a timeout rejects with WaitTimeoutError; an abort stops the waiter at once", async () => {
  const s = scratch();
  try {
    await s.t.run(["sleep", "30"], { id: "long" });
    await assert.rejects(s.t.wait("long", { timeoutMs: 300 }), (e) => e instanceof WaitTimeoutError && e.code === 124);
    const ac = new AbortController();
    const waiting = s.t.wait("long", { signal: ac.signal });
    await sleep(200);
    const abortedAt = Date.now();
    ac.abort();
    await assert.rejects(waiting, (e) => e.name === "AbortError");
    assert.ok(Date.now() - abortedAt < 2000, "the abort was not prompt");
    const already = AbortSignal.abort();
    await assert.rejects(s.t.wait("long", { signal: already }), (e) => e.name === "AbortError");
  } finally {
    await s.done();
  }
});

test("result of a running job is JobActiveError; cancel, then cancel again", async () => {
  const s = scratch();
  try {
    const job = await s.t.run(["sleep", "30"], { id: "c" });
    await assert.rejects(s.t.result("c"), (e) => e instanceof JobActiveError && e.code === 5);
    const first = await s.t.cancel("c", { graceMs: 500 });
    assert.equal(first.outcome, "cancelled");
    assert.equal(first.job?.status, "cancelled");
    assert.equal(alive(job.childPid ?? 0), false, "the child survived the cancel");
    const second = await s.t.cancel("c");
    assert.equal(second.outcome, "already-ended");
    assert.equal((await s.t.result("c")).status, "cancelled");
  } finally {
    await s.done();
  }
});

test("run: a taken id and a missing command are typed errors", async () => {
  const s = scratch();
  try {
    await s.t.run(["true"], { id: "taken" });
    await assert.rejects(s.t.run(["true"], { id: "taken" }), (e) => e instanceof IdTakenError && /already exists/.test(e.message));
    await assert.rejects(s.t.run(["/nonexistent/cmd"]), (e) => e instanceof CommandNotFoundError && e.code === 127);
    await assert.rejects(s.t.run([]), TypeError);
  } finally {
    await s.done();
  }
});

test("list: filters on activity", async () => {
  const s = scratch();
  try {
    await s.t.run(["true"], { id: "short" });
    await s.t.wait("short");
    await s.t.run(["sleep", "30"], { id: "busy" });
    assert.deepEqual((await s.t.list()).map((j) => j.id).sort(), ["busy", "short"]);
    assert.deepEqual((await s.t.list({ active: true })).map((j) => j.id), ["busy"]);
    assert.deepEqual((await s.t.list({ status: ["succeeded"] })).map((j) => j.id), ["short"]);
  } finally {
    await s.done();
  }
});

test("metadata: stored at run, shown by status, filtered on by list", async () => {
  const s = scratch();
  try {
    await s.t.run(["sleep", "30"], { id: "m1", meta: { session: "s1", kind: "task" } });
    await s.t.run(["sleep", "30"], { id: "m2", meta: { session: "s2" } });
    assert.deepEqual((await s.t.status("m1"))?.meta, { kind: "task", session: "s1" });
    assert.deepEqual((await s.t.list({ meta: { session: "s2" } })).map((j) => j.id), ["m2"]);
    assert.deepEqual((await s.t.list({ meta: { session: "s1", kind: "task" }, active: true })).map((j) => j.id), ["m1"]);
    await assert.rejects(s.t.run(["true"], { meta: { "bad/key": "x" } }), (e) => e instanceof UsageError && /bad\/key/.test(e.message));
  } finally {
    await s.done();
  }
});

test("unique: a live holder refuses, a dead one never blocks", async () => {
  const s = scratch();
  try {
    const first = await s.t.run(["sleep", "30"], { id: "u1", unique: "session-9" });
    assert.equal(first.record.unique, "session-9");
    await assert.rejects(
      s.t.run(["sleep", "30"], { id: "u2", unique: "session-9" }),
      (e) => e instanceof UniqueHeldError && e.code === 12 && e.kind === "unique-held" && e.holder === "u1",
    );
    assert.equal(await s.t.status("u2"), null, "a refused start leaves no record");
    await killAndWait(first.holderPid);
    const second = await s.t.run(["sleep", "30"], { id: "u3", unique: "session-9" });
    assert.equal(second.record.status, "running");
    assert.equal((await s.t.status("u1"))?.status, "lost");
    // Queued: resolves once u3 has ended and u4 holds the key.
    const queued = s.t.run(["sleep", "30"], { id: "u4", unique: "session-9", uniqueWait: true });
    await sleep(300);
    assert.equal(await s.t.status("u4"), null, "u4 started while u3 held the key");
    await s.t.cancel("u3", { graceMs: 200 });
    assert.equal((await queued).record.status, "running");
  } finally {
    await s.done();
  }
});

test("judgeLocal agrees with the CLI, without spawning anything", async () => {
  const s = scratch();
  try {
    const job = await s.t.run(["sleep", "30"], { id: "local", ttlMs: 20_000 });
    s.track(job.childPid);
    const v = judgeLocal(s.dir, "local");
    assert.equal(v?.verdict, "active");
    assert.equal(v?.rule, "R7", "same boot, host and namespace: the monotonic rule");
    assert.ok(v.expiresInMs > 15_000 && v.expiresInMs <= 20_000, String(v.expiresInMs));
    assert.equal(judgeLocal(s.dir, "absent"), null);
    await killAndWait(job.holderPid);
    const dead = judgeLocal(s.dir, "local");
    assert.equal(dead?.verdict, "lost");
    assert.equal(dead?.reason, "worker-exited");
    assert.equal((await s.t.status("local"))?.reason, "worker-exited", "the CLI agrees");
  } finally {
    await s.done();
  }
});

test("judgeLocal folds the lease file the Rust wrapper writes (6.5)", async () => {
  const s = scratch();
  try {
    // Renewals go to the lease file, not the record: after 3 ttls only the fold keeps it active.
    const job = await s.t.run(["sleep", "30"], { id: "fold", ttlMs: 1000, intervalMs: 200 });
    s.track(job.childPid);
    await sleep(3000);
    const v = judgeLocal(s.dir, "fold");
    assert.equal(v?.verdict, "active", JSON.stringify(v && { ...v, record: undefined }));
    assert.ok(v.expiresInMs > 0 && v.expiresInMs <= 1000, String(v.expiresInMs));
    const { readFileSync } = await import("node:fs");
    const raw = JSON.parse(readFileSync(`${s.dir}/jobs/fold.json`, "utf8"));
    assert.ok(
      v.record.lease.renewed_mono_ms > raw.lease.renewed_mono_ms,
      "the record file alone was fresh: this test did not exercise the fold",
    );
  } finally {
    await s.done();
  }
});

test("remove deletes an ended job (tether rm)", async (t) => {
  if (!(await hasCommand("rm"))) return t.todo("this tether has no `rm` yet (issue 15 item 4)");
  const s = scratch();
  try {
    await s.t.run(["true"], { id: "gone" });
    await s.t.wait("gone");
    await s.t.remove("gone");
    assert.equal(await s.t.status("gone"), null);
  } finally {
    await s.done();
  }
});

test("watch yields changes as they happen (tether watch --json)", async (t) => {
  if (!(await hasCommand("watch"))) return t.todo("this tether has no `watch` yet (issue 15 item 7)");
  const s = scratch();
  try {
    await s.t.run(["true"], { id: "first" }); // the state directory exists before the watch starts
    const ac = new AbortController();
    const seen = [];
    const watching = (async () => {
      for await (const ev of s.t.watch({ meta: { session: "w" }, signal: ac.signal })) {
        seen.push(ev);
        if (!("removed" in ev) && ev.id === "w1" && ev.status === "lost") break;
      }
    })();
    await sleep(300);
    const job = await s.t.run(["sleep", "30"], { id: "w1", meta: { session: "w" } });
    await s.t.run(["sleep", "30"], { id: "other" });
    await sleep(300);
    await killAndWait(job.holderPid);
    s.track(job.childPid);
    const timer = setTimeout(() => ac.abort(), 20_000);
    await watching;
    clearTimeout(timer);
    const mine = seen.filter((e) => !("removed" in e));
    assert.ok(mine.some((e) => e.id === "w1" && e.status === "running"), JSON.stringify(seen.map((e) => [e.id, e.status])));
    assert.ok(mine.some((e) => e.id === "w1" && e.status === "lost" && e.reason === "worker-exited"));
    assert.ok(mine.every((e) => e.id !== "other"), "the meta filter let another job through");
  } finally {
    await s.done();
  }
});

test("waitAll: every job, or the first with any", async () => {
  const s = scratch();
  try {
    await s.t.run(["sh", "-c", "sleep 0.3; exit 3"], { id: "quick" });
    await s.t.run(["sleep", "1.5"], { id: "slow" });
    await s.t.run(["sleep", "30"], { id: "long" });
    const first = await s.t.waitAll(["quick", "long"], { any: true, timeoutMs: 20_000 });
    const quick = first.find((j) => j.id === "quick");
    assert.equal(quick?.status, "failed");
    assert.deepEqual(quick?.exit, { code: 3 });
    assert.equal(first.find((j) => j.id === "long")?.status, "running");
    const all = await s.t.waitAll(["quick", "slow"], { timeoutMs: 20_000 });
    assert.deepEqual(all.map((j) => [j.id, j.status]).sort(), [["quick", "failed"], ["slow", "succeeded"]]);
    await assert.rejects(s.t.waitAll(["long"], { timeoutMs: 200 }), WaitTimeoutError);
  } finally {
    await s.done();
  }
});
