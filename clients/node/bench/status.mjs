// Latency of Tether#status on one existing job: `TETHER_DIR=... TETHER_BIN=... node bench/status.mjs [N] [ID]`.
import { Tether } from "../index.js";
const t = new Tether();
const n = Number(process.argv[2] ?? 200);
const id = process.argv[3] ?? "crawl";
const ms = [];
for (let i = 0; i < n; i++) {
  const t0 = process.hrtime.bigint();
  await t.status(id);
  ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
ms.sort((a, b) => a - b);
console.log(`status(id) x${n}: median ${ms[n >> 1].toFixed(2)} ms, p95 ${ms[Math.floor(n * 0.95)].toFixed(2)} ms`);
