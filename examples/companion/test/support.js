// For the companion's fault tests: a private state directory and broker per test, the tether
// binary under test, a memory-limited cgroup for the OOM case, and cleanup by pid.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tether } from "../../../clients/node/index.js";
import { Companion } from "../companion.mjs";

const here = fileURLToPath(new URL("..", import.meta.url));
const repo = join(here, "..", "..");

export const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/** $TETHER_BIN, else the repository's debug build. */
export function tetherBin() {
  const bin = process.env.TETHER_BIN || join(repo, "target", "debug", "tether");
  if (!existsSync(bin)) throw new Error(`no tether binary at ${bin}: run \`cargo build\` or set TETHER_BIN`);
  return bin;
}

/** Exists and is not a zombie. @param {number} pid */
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false;
  }
}

/** SIGKILL a pid this test started and wait (bounded) until it is gone. @param {number} pid */
export async function kill(pid, signal = "SIGKILL") {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  for (let i = 0; i < 250 && alive(pid); i++) await sleep(20);
}

/**
 * A state directory, a broker (answering `answer` turns, then wedged) and a Companion on them.
 * @param {{ answer?: number, ttlMs?: number, delayMs?: number, probe?: { everyMs?: number, timeoutMs?: number, failures?: number } }} [o]
 */
export async function world(o = {}) {
  const root = mkdtempSync(join(tmpdir(), "tether-companion-"));
  const socket = join(root, "broker.sock");
  const args = [join(here, "broker.mjs"), socket, "--delay-ms", String(o.delayMs ?? 50)];
  if (o.answer !== undefined) args.push("--answer", String(o.answer));
  const broker = spawn(process.execPath, args, { stdio: "ignore" });
  for (let i = 0; i < 250 && !existsSync(socket); i++) await sleep(20);
  if (!existsSync(socket)) throw new Error("the broker did not start");
  const env = { ...process.env, TETHER_DIR: join(root, "state") };
  const tether = new Tether({ bin: tetherBin(), env });
  const app = new Companion({ tether, broker: socket, ttlMs: o.ttlMs ?? 3000, probe: o.probe });
  /** @type {number[]} */
  const pids = [];
  return {
    app,
    tether,
    env,
    root,
    socket,
    /** @param {number | null | undefined} pid */
    track: (pid) => void (pid && pids.push(pid)),
    async done() {
      for (const job of await tether.list().catch(() => [])) {
        if (job.active) await tether.cancel(job.id, { graceMs: 200 }).catch(() => {});
        pids.push(job.holder.pid, job.child?.pid ?? 0);
      }
      for (const pid of pids) if (pid > 1) await kill(pid);
      await kill(broker.pid ?? 0);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * A memory cgroup limited to `mb` MiB (cgroup v1 `memory.limit_in_bytes` or v2 `memory.max`) under
 * this process's own, or null when none can be made here. `wrap` is a command prefix that moves
 * the command into it before it starts.
 * @param {number} mb
 */
export function memoryCgroup(mb) {
  const lines = readFileSync("/proc/self/cgroup", "utf8").trim().split("\n");
  const name = `tether-oom-${process.pid}-${Date.now()}`;
  const candidates = [];
  const v1 = lines.find((l) => /^\d+:memory:/.test(l));
  if (v1) candidates.push({ dir: join("/sys/fs/cgroup/memory", v1.split(":")[2], name), limit: "memory.limit_in_bytes" });
  const v2 = lines.find((l) => l.startsWith("0::"));
  if (v2) {
    for (const mount of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]) {
      candidates.push({ dir: join(mount, v2.slice(3), name), limit: "memory.max" });
    }
  }
  for (const c of candidates) {
    try {
      mkdirSync(c.dir);
    } catch {
      continue;
    }
    try {
      writeFileSync(join(c.dir, c.limit), String(mb * 1024 * 1024));
      const procs = join(c.dir, "cgroup.procs");
      return {
        dir: c.dir,
        wrap: ["sh", "-c", `echo $$ > ${procs} && exec "$@"`, "sh"],
        remove: () => {
          for (let i = 0; i < 50; i++) {
            try {
              return rmdirSync(c.dir);
            } catch {
              Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
            }
          }
        },
      };
    } catch {
      rmdirSync(c.dir);
    }
  }
  return null;
}
