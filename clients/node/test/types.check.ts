// Compiled by `npm run typecheck` (tsc --noEmit), never run: the API used as a TypeScript caller would.
import {
  Tether,
  judge,
  beat,
  judgeLocal,
  TetherNotFound,
  JobNotFoundError,
  type Job,
  type Verdict,
  type ReaderFacts,
  type StartedJob,
} from "../index.js";

async function use(): Promise<void> {
  const t = new Tether({ bin: "/usr/bin/tether", dir: "/tmp/x" });
  const started: StartedJob = await t.run(["sleep", "1"], {
    id: "a",
    meta: { session: "s1" },
    unique: "session-s1",
    heartbeat: "file",
    ttlMs: 5000,
    probe: { spec: "unix:/tmp/broker.sock", failures: 3 },
  });
  const pid: number = started.holderPid;
  const job: Job | null = await t.status(started.id);
  if (job) {
    const at: Date | null = job.progress.at;
    const ms: number = job.lease.ttlMs;
    void at, ms, pid;
  }
  const ended: Job = await t.wait("a", { timeoutMs: 1000, signal: AbortSignal.timeout(5000) });
  const { outcome } = await t.cancel(ended.id, { graceMs: 100 });
  const o: "cancelled" | "already-ended" = outcome;
  void o;
  for await (const change of t.watch({ meta: { session: "s1" } })) {
    if ("removed" in change) {
      const gone: string = change.id;
      void gone;
    } else {
      const s: string = change.status;
      void s;
    }
  }
  const facts: ReaderFacts = { probe: { holder: "alive", start: null }, bootId: "b", host: "h", timeNs: null, monoMs: 1 };
  const v: Verdict = judge("{}", facts, Date.now());
  if (v.verdict === "active") {
    const left: number = v.expiresInMs;
    void left;
  } else if (v.verdict === "corrupt") {
    const why: string = v.problem;
    void why;
  }
  const local = judgeLocal("/tmp/x", "a");
  void local;
  const beaten: boolean = beat({ message: "step 1" });
  void beaten;
  try {
    await t.result("a");
  } catch (e) {
    if (e instanceof TetherNotFound || e instanceof JobNotFoundError) {
      const code: number | null = e.code;
      void code;
    }
  }
}
void use;
