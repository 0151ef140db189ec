// Time from SIGKILL of a job's holder to Tether#wait resolving `lost`, over N jobs (ttl 60 s, so a
// result under it is the death seen, not the lease run out). `TETHER_BIN=... node bench/lost.mjs [N]`
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tether } from "../index.js";

const root = mkdtempSync(join(tmpdir(), "tether-bench-lost-"));
const t = new Tether({ env: { ...process.env, TETHER_DIR: join(root, "state") } });
const n = Number(process.argv[2] ?? 20);
const ms = [];
for (let i = 0; i < n; i++) {
  const job = await t.run(["sleep", "120"], { ttlMs: 60_000 });
  const waiting = t.wait(job.id, { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 100)); // the waiter is watching
  const t0 = process.hrtime.bigint();
  process.kill(job.holderPid, "SIGKILL");
  const ended = await waiting;
  ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (ended.status !== "lost") throw new Error(`job ${job.id} ended ${ended.status}`);
  try {
    if (job.childPid) process.kill(job.childPid, "SIGKILL");
  } catch {}
}
rmSync(root, { recursive: true, force: true });
ms.sort((a, b) => a - b);
console.log(`SIGKILL of the holder -> wait() resolved lost, x${n}: median ${ms[n >> 1].toFixed(1)} ms, max ${ms[n - 1].toFixed(1)} ms`);
