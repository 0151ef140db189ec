// The seed's companion pattern on tether: an app that runs one detached worker per task, with the
// session in the job's metadata and at most one active task per session, and keeps no job records
// of its own. Every question (is it running? how did it end? may a new task start?) is answered
// by tether's verdict, so a worker that was SIGKILLed, OOM-killed or wedged on its broker can
// neither be reported "running" forever nor block the session's next task.
//
//   BROKER=/tmp/broker.sock node companion.mjs task SESSION [--turns N]
//   node companion.mjs status [ID] [--wait]      node companion.mjs result ID
//   node companion.mjs active SESSION            node companion.mjs cancel ID

import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Tether, UniqueHeldError } from "../../clients/node/index.js"; // a project: "tether-lease"

const WORKER = fileURLToPath(new URL("./worker.mjs", import.meta.url));
const PROBE = fileURLToPath(new URL("./probe.mjs", import.meta.url));
/**
 * A word for `sh -c`, quoted only when it must be: tether checks that a probe's command exists
 * before the job starts, reading its first word as is (a quoted first word is not found).
 * @param {string} s
 */
const shellQuote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);

/** The session already has an active task: the seed's "Task X is still running", now true. */
export class TaskBusy extends Error {
  /** @param {string} session @param {string | null} holder */
  constructor(session, holder) {
    super(`session ${session} already has an active task${holder ? ` (${holder})` : ""}`);
    this.name = "TaskBusy";
    this.holder = holder;
  }
}

export class Companion {
  /**
   * @param {{ tether?: Tether, broker: string, ttlMs?: number, intervalMs?: number,
   *           probe?: { everyMs?: number, timeoutMs?: number, failures?: number } }} options
   * ttlMs: how long a worker may go without completing a turn before it is judged lost. With
   * `probe`, tether also asks the broker (probe.mjs) every `everyMs`; `failures` unanswered
   * probes in a row make the task lost (probe-failed), so ttlMs can be long enough for silent
   * phases while a wedged broker is still caught quickly.
   */
  constructor({ tether = new Tether(), broker, ttlMs = 3000, intervalMs = 250, probe }) {
    this.tether = tether;
    this.broker = broker;
    this.ttlMs = ttlMs;
    this.intervalMs = intervalMs;
    this.probe = probe;
  }

  /**
   * Starts a task's worker, detached. `wrap` prefixes the worker's command (the tests use it to
   * put the worker in a memory-limited cgroup).
   * @param {string} session
   * @param {{ turns?: number, hogMb?: number, wrap?: string[] }} [o]
   */
  async startTask(session, o = {}) {
    const argv = [...(o.wrap ?? []), process.execPath, WORKER, "--broker", this.broker, "--turns", String(o.turns ?? 3)];
    if (o.hogMb !== undefined) argv.push("--hog-mb", String(o.hogMb));
    try {
      return await this.tether.run(argv, {
        name: `task for session ${session}`,
        meta: { session, kind: "task" },
        unique: `session-${session}`, // tether keeps "one active task per session", race-free
        heartbeat: "file",
        ttlMs: this.ttlMs,
        intervalMs: this.intervalMs,
        graceMs: 500,
        ...(this.probe && {
          probe: {
            spec: `${shellQuote(process.execPath)} ${shellQuote(PROBE)} ${shellQuote(this.broker)}`,
            ...this.probe,
          },
        }),
        env: { ...this.tether.env, TASK_SESSION: session },
      });
    } catch (e) {
      if (e instanceof UniqueHeldError) throw new TaskBusy(session, e.holder);
      throw e;
    }
  }

  /** The session's active task, or null. @param {string} session */
  async activeTask(session) {
    const [job] = await this.tether.list({ active: true, meta: { session } });
    return job ?? null;
  }

  /** @param {string} id */
  status(id) {
    return this.tether.status(id);
  }

  /** Resolves when the task has ended, however it ended. @param {string} id @param {number} [timeoutMs] */
  waitTask(id, timeoutMs = 240_000) {
    return this.tether.wait(id, { timeoutMs });
  }

  /** @param {string} id */
  result(id) {
    return this.tether.result(id);
  }

  /** @param {string} id */
  cancel(id) {
    return this.tether.cancel(id, { graceMs: 500 });
  }
}

/** A job as one JSON line: what the CLI of the example prints. @param {import("../../clients/node/index.js").Job | null} j */
function line(j) {
  if (!j) return JSON.stringify(null);
  const { id, status, reason, exit, progress, meta, logTail } = j;
  return JSON.stringify({ id, status, reason, exit, progress: progress.message, session: meta.session, logTail });
}

async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { turns: { type: "string" }, wait: { type: "boolean" } },
  });
  const [cmd, arg] = positionals;
  const app = new Companion({ broker: process.env.BROKER ?? "/tmp/broker.sock" });
  switch (cmd) {
    case "task": {
      const job = await app.startTask(arg, { turns: values.turns ? Number(values.turns) : undefined });
      console.log(line(job.record));
      break;
    }
    case "status":
      if (!arg) for (const j of await app.tether.list()) console.log(line(j));
      else console.log(line(values.wait ? await app.waitTask(arg) : await app.status(arg)));
      break;
    case "result":
      console.log(line(await app.result(arg)));
      break;
    case "active":
      console.log(line(await app.activeTask(arg)));
      break;
    case "cancel":
      console.log(JSON.stringify((await app.cancel(arg)).outcome));
      break;
    default:
      console.error("usage: node companion.mjs task SESSION [--turns N] | status [ID] [--wait] | result ID | active SESSION | cancel ID");
      process.exit(2);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`companion: ${e.message}`);
    process.exit(e instanceof TaskBusy ? 75 : 1);
  });
}
