// Shared by the tests: the tether binary under test, a private state directory per test, and
// cleanup of every process a test started, by pid, with a bounded wait.

import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tether } from "../index.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));

/** $TETHER_BIN, else the newest of the repository's debug and release builds. */
export function tetherBin() {
  if (process.env.TETHER_BIN) return process.env.TETHER_BIN;
  const builds = ["debug", "release"]
    .map((p) => join(repo, "target", p, "tether"))
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (builds.length === 0) throw new Error(`no tether binary: run \`cargo build\` in ${repo} or set TETHER_BIN`);
  return builds[0];
}

/** A Tether on a fresh state directory; `done()` stops what is left and removes the directory. */
export function scratch() {
  const root = mkdtempSync(join(tmpdir(), "tether-node-"));
  const dir = join(root, "state");
  const env = { ...process.env, TETHER_DIR: dir };
  const t = new Tether({ bin: tetherBin(), env });
  /** @type {number[]} */
  const pids = [];
  return {
    t,
    dir,
    env,
    /** Remember a pid to kill at the end, whatever the test did. @param {number | null | undefined} pid */
    track(pid) {
      if (pid) pids.push(pid);
    },
    async done() {
      for (const job of await t.list().catch(() => [])) {
        if (job.active) await t.cancel(job.id, { graceMs: 200 }).catch(() => {});
        pids.push(job.holder.pid, job.child?.pid ?? 0);
      }
      for (const pid of pids) await killAndWait(pid);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** SIGKILL a pid we started, then wait (up to 5 s) until it is gone. @param {number} pid */
export async function killAndWait(pid) {
  if (!pid || pid < 2) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  const end = Date.now() + 5000;
  while (Date.now() < end && alive(pid)) await sleep(20);
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

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether the binary has a subcommand (parts of the CLI contract of issue 15 land over time). */
export async function hasCommand(name) {
  const { exec } = await import("../src/cli.js");
  const out = await exec(tetherBin(), ["help"]);
  return new RegExp(`^\\s+${name}\\s`, "m").test(out.stdout);
}
