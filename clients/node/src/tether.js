// The Tether class: jobs driven through the tether CLI, with typed results and errors. Every method
// is one CLI call with `--json`; nothing here polls (waiting is `tether status --wait`, which the
// CLI does with inotify and pidfds).

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { exec, resolveBin } from "./cli.js";
import { errorFor, CancelRefusedError, JobNotFoundError, StateDirError, TetherNotFound } from "./errors.js";
import { toJob, jobsOf } from "./job.js";

/** A duration for the CLI: whole milliseconds, which every duration option accepts. @param {number} ms */
function dur(ms) {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`a duration must be a finite number of ms >= 0, got ${ms}`);
  return `${Math.round(ms)}ms`;
}

/** @param {Record<string, string> | undefined} meta */
function metaArgs(meta) {
  return Object.entries(meta ?? {}).flatMap(([k, v]) => ["--meta", `${k}=${v}`]);
}

/** @param {import("../index.js").Job} job @param {Record<string, string> | undefined} meta */
function metaMatches(job, meta) {
  return Object.entries(meta ?? {}).every(([k, v]) => job.meta[k] === v);
}

export class Tether {
  /** @param {import("../index.js").TetherOptions} [options] */
  constructor(options = {}) {
    this.env = options.env ?? process.env;
    this.bin = resolveBin(options.bin, this.env);
    this.dir = options.dir;
  }

  /**
   * One CLI call; a non-zero exit outside `ok` becomes the typed error of its code.
   * @param {string[]} args
   * @param {{ ok?: number[], overrides?: Record<number, any>, cwd?: string, env?: NodeJS.ProcessEnv,
   *           signal?: AbortSignal }} [o]
   */
  async call(args, o = {}) {
    const full = this.dir ? ["--dir", this.dir, ...args] : args;
    const out = await exec(this.bin, full, { cwd: o.cwd, env: o.env ?? this.env, signal: o.signal });
    if (out.code !== 0 && !(o.ok ?? []).includes(out.code)) throw errorFor(out.code, full, out.stderr, o.overrides);
    return out;
  }

  /** @param {string[]} argv @param {import("../index.js").RunOptions} [o] */
  async run(argv, o = {}) {
    if (!Array.isArray(argv) || argv.length === 0) throw new TypeError("run(argv): argv is a non-empty array of strings");
    const args = ["run", "--detach", "--json"];
    if (o.id !== undefined) args.push("--id", o.id);
    if (o.name !== undefined) args.push("--name", o.name);
    if (o.heartbeat !== undefined) args.push("--heartbeat", o.heartbeat);
    if (o.ttlMs !== undefined) args.push("--ttl", dur(o.ttlMs));
    if (o.intervalMs !== undefined) args.push("--interval", dur(o.intervalMs));
    if (o.graceMs !== undefined) args.push("--grace", dur(o.graceMs));
    if (o.onStall !== undefined) args.push("--on-stall", o.onStall);
    args.push(...metaArgs(o.meta));
    if (o.unique !== undefined) args.push("--unique", o.unique);
    if (o.uniqueWait) args.push("--unique-wait");
    if (o.probe !== undefined) {
      const p = typeof o.probe === "string" ? { spec: o.probe } : o.probe;
      args.push("--probe", p.spec);
      if (p.everyMs !== undefined) args.push("--probe-every", dur(p.everyMs));
      if (p.timeoutMs !== undefined) args.push("--probe-timeout", dur(p.timeoutMs));
      if (p.failures !== undefined) args.push("--probe-failures", String(p.failures));
      if (p.graceMs !== undefined) args.push("--probe-grace", dur(p.graceMs));
    }
    args.push("--", ...argv);
    const env = o.env ? { ...o.env } : { ...this.env };
    const out = await this.call(args, { cwd: o.cwd, env });
    const started = JSON.parse(out.stdout.trim().split("\n").pop() ?? "{}");
    const job = await this.status(started.id);
    if (!job) throw new JobNotFoundError(`job ${started.id} was started but has no record`, { args });
    return { id: job.id, holderPid: job.holder.pid, childPid: job.child?.pid ?? null, log: started.log ?? null, record: job };
  }

  /** The job as the verdict sees it, or null for an unknown id. @param {string} id */
  async status(id) {
    try {
      const out = await this.call(["status", "--json", id]);
      const [j] = jobsOf(out.stdout);
      return j ? toJob(j) : null;
    } catch (e) {
      if (e instanceof JobNotFoundError) return null;
      // No state directory yet: no job can exist.
      if (e instanceof StateDirError && / does not exist/.test(e.message)) return null;
      throw e;
    }
  }

  /** @param {import("../index.js").ListOptions} [o] */
  async list(o = {}) {
    let out;
    try {
      out = await this.call(["status", "--json"]);
    } catch (e) {
      if (e instanceof StateDirError && / does not exist/.test(e.message)) return [];
      throw e;
    }
    return jobsOf(out.stdout)
      .map(toJob)
      .filter((j) => (!o.active || j.active) && metaMatches(j, o.meta) && (!o.status || o.status.includes(j.status)));
  }

  /**
   * Resolves with the job once it is terminal or judged lost; rejects with WaitTimeoutError after
   * `timeoutMs`, and with the signal's reason when `signal` aborts.
   * @param {string} id @param {{ timeoutMs?: number, signal?: AbortSignal }} [o]
   */
  async wait(id, o = {}) {
    const args = ["status", "--wait", "--json", "--timeout", o.timeoutMs === undefined ? "0" : dur(o.timeoutMs), id];
    // 1, 3 and 4 say how the job ended (failed, lost, cancelled): all are answers, not errors.
    const out = await this.call(args, { ok: [1, 3, 4], signal: o.signal });
    return toJob(jobsOf(out.stdout)[0]);
  }

  /**
   * Waits for several jobs at once (`tether status --wait A B ...`): resolves with every job once
   * all have ended, or, with `any`, as soon as one has (the others as they are then).
   * @param {string[]} ids @param {{ any?: boolean, timeoutMs?: number, signal?: AbortSignal }} [o]
   */
  async waitAll(ids, o = {}) {
    if (!Array.isArray(ids) || ids.length === 0) throw new TypeError("waitAll(ids): ids is a non-empty array");
    const args = ["status", "--wait", "--json", "--timeout", o.timeoutMs === undefined ? "0" : dur(o.timeoutMs)];
    if (o.any) args.push("--any");
    const out = await this.call([...args, ...ids], { ok: [1, 3, 4], signal: o.signal });
    return jobsOf(out.stdout).map(toJob);
  }

  /** The outcome of an ended job with the tail of its log. @param {string} id */
  async result(id) {
    const out = await this.call(["result", "--json", id], { ok: [1, 3, 4] });
    return toJob(jobsOf(out.stdout)[0]);
  }

  /** @param {string} id @param {{ graceMs?: number }} [o] */
  async cancel(id, o = {}) {
    const args = ["cancel", "--json", ...(o.graceMs === undefined ? [] : ["--grace", dur(o.graceMs)]), id];
    const out = await this.call(args, { overrides: { 5: CancelRefusedError } });
    const c = JSON.parse(out.stdout);
    const job = await this.status(id);
    /** @type {import("../index.js").CancelOutcome} */
    const outcome = c.cancelled ? "cancelled" : "already-ended";
    return { outcome, job, raw: c };
  }

  /** Removes an ended job's record and log (`tether rm`). @param {string} id @param {{ force?: boolean }} [o] */
  async remove(id, o = {}) {
    await this.call(["rm", ...(o.force ? ["--force"] : []), id]);
  }

  /**
   * Live changes, as the CLI's `tether watch --json` reports them (one JSON object per line): a
   * job each time its status, progress, exit or child changes, and `{ id, removed: true }` when a
   * job disappears (`rm`, `gc`). Breaking out of the loop, or aborting `signal`, stops the watcher.
   * @param {{ meta?: Record<string, string>, active?: boolean, signal?: AbortSignal }} [o]
   * @returns {AsyncGenerator<import("../index.js").WatchEvent>}
   */
  async *watch(o = {}) {
    const args = [...(this.dir ? ["--dir", this.dir] : []), "watch", "--json", ...metaArgs(o.meta)];
    if (o.active) args.push("--active");
    const child = spawn(this.bin, args, { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    /** @type {Buffer[]} */ const err = [];
    child.stderr.on("data", (b) => err.push(b));
    /** @type {Promise<number>} */
    const closed = new Promise((resolve, reject) => {
      child.on("error", (e) =>
        reject(/** @type {any} */ (e).code === "ENOENT" ? new TetherNotFound(`cannot run ${this.bin}`, { cause: e }) : e),
      );
      child.on("close", (code, sig) => resolve(code ?? (sig ? 128 : 0)));
    });
    closed.catch(() => {});
    const stop = () => child.kill("SIGTERM");
    o.signal?.addEventListener("abort", stop, { once: true });
    try {
      for await (const line of createInterface({ input: child.stdout })) {
        if (line.trim() === "") continue;
        const event = JSON.parse(line);
        if (event.removed === true) {
          yield { id: event.id, removed: true };
          continue;
        }
        const job = toJob(event);
        if (metaMatches(job, o.meta)) yield job;
      }
      const code = await closed;
      if (code !== 0 && !o.signal?.aborted) throw errorFor(code, args, Buffer.concat(err).toString("utf8"));
    } finally {
      o.signal?.removeEventListener("abort", stop);
      if (child.exitCode === null && child.signalCode === null) stop();
    }
  }
}
