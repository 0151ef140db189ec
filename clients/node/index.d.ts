// Types of tether-lease. Hand-written; `npm run typecheck` checks the sources against them.

/// <reference types="node" />

// ---------- the protocol's record (protocol.md section 4), as it is in the file ----------

export type Status = "starting" | "running" | "succeeded" | "failed" | "cancelled" | "lost";
export type Reason =
  | "exited"
  | "signaled"
  | "start-failed"
  | "heartbeat-timeout"
  | "probe-failed"
  | "holder-signaled"
  | "cancelled"
  | "worker-exited"
  | "pid-reused"
  | "lease-expired"
  | "host-rebooted";
export type Exit = { code: number } | { signal: number };

/** A job record as stored in `jobs/<id>.json`: snake_case, timestamps as RFC 3339 strings. */
export interface LeaseRecord {
  protocol: number;
  id: string;
  name?: string | null;
  argv: string[];
  cwd?: string | null;
  created_at: string;
  status: Status;
  reason: Reason | null;
  holder: { pid: number; start: string; boot_id: string; host: string; time_ns?: string | null; pid_ns?: string | null };
  child?: { pid: number; start: string; pgid: number } | null;
  lease: { epoch: number; interval_ms: number; ttl_ms: number; renewed_at: string; renewed_mono_ms: number };
  progress?: {
    message?: string | null;
    at?: string | null;
    count?: number;
    rejected?: number;
    extended_until?: string | null;
    probe?: Record<string, unknown> | null;
  } | null;
  exit?: Exit | null;
  finished_at?: string | null;
  late?: Array<Record<string, unknown>> | null;
  meta?: Record<string, string>;
  unique?: string | null;
  [unknown: string]: unknown;
}

// ---------- the verdict (protocol.md section 7) ----------

/** The reader's probe of the holder's pid (7.1). `start: null` is an alive process of unknown start time. */
export type Probe = { holder: "gone" } | { holder: "alive"; start: string | null };

export interface ReaderFacts {
  probe: Probe;
  bootId: string;
  host: string;
  /** The reader's time namespace (Linux: the target of /proc/self/ns/time), null where unknown. */
  timeNs: string | null;
  /**
   * The reader's pid namespace (Linux: the target of /proc/self/ns/pid, when /proc is that
   * namespace's), null or absent where unknown. Unless it equals the record's `holder.pid_ns`, the
   * probe is ignored and the lease alone decides (rule R3a).
   */
  pidNs?: string | null;
  /** The reader's monotonic clock (CLOCK_MONOTONIC), in ms. */
  monoMs: number;
  /** The bytes of `jobs/<id>.lease` (6.5), folded in before judging an active record. */
  leaseFile?: Uint8Array | string | null;
}

export type Rule = "R0" | "R1" | "R2" | "R3" | "R3a" | "R4" | "R5" | "R6" | "R7";

export type Verdict =
  | { verdict: "corrupt"; problem: string }
  | { verdict: "unsupported"; rule: "R0"; version: number }
  | { verdict: "terminal"; rule: "R1"; status: Status; reason: Reason | null; record: LeaseRecord }
  | {
      verdict: "lost";
      rule: "R2" | "R3" | "R3a" | "R4" | "R5" | "R6";
      status: "lost";
      reason: "lease-expired" | "host-rebooted" | "worker-exited" | "pid-reused";
      record: LeaseRecord;
    }
  | {
      verdict: "active";
      rule: "R2" | "R3a" | "R7";
      status: "starting" | "running";
      reason: null;
      /** Time left until the lease's expiry (7.3); 0 at the last active millisecond. */
      expiresInMs: number;
      expiresAt: Date;
      record: LeaseRecord;
    };

/** Section 7's verdict of a record (an object, or the file's text or bytes) at wall time `nowMs`. */
export function judge(record: LeaseRecord | string | Uint8Array, facts: ReaderFacts, nowMs: number): Verdict;
export const SKEW_ALLOWANCE_MS: number;

export type Classified =
  | { kind: "ok"; record: LeaseRecord }
  | { kind: "unsupported"; version: number }
  | { kind: "corrupt"; problem: string };
/** Sections 4.3 and 4.4: whether a record is usable, and if not, why. */
export function classifyRecord(input: string | Uint8Array | object): Classified;

export interface LeaseSlot {
  seq: number;
  epoch: number;
  monoMs: number;
  wallMs: number;
  beats: number;
  beatAtMs: number | null;
}
/** The newest valid slot of a lease file (6.5), or null. */
export function newestSlot(file: Uint8Array | string | null | undefined): LeaseSlot | null;
/** The record with its lease file folded in (6.5); a new object. */
export function foldLeaseFile<R extends LeaseRecord>(record: R, file: Uint8Array | string | null | undefined): R;
/** Milliseconds since the epoch of a protocol timestamp, or null. */
export function parseTimestamp(text: unknown): number | null;

/** The probe of a pid on this machine (Linux). */
export function probePid(pid: number): Probe;
/** The facts for judging a record held by `pid`, read now on this machine (Linux). */
export function localFacts(pid: number): ReaderFacts;
/** Judges a job from its files in `dir`, without running anything; null for no such record. */
export function judgeLocal(dir: string, id: string): Verdict | null;

// ---------- the writing side (sections 5 and 6.4) ----------

export type Write =
  | { kind: "create"; record: LeaseRecord }
  | {
      kind: "renew";
      epoch: number;
      at: string;
      mono_ms: number;
      running?: boolean;
      child?: LeaseRecord["child"];
      progress?: { message?: string | null; at?: string | null; count?: number };
    }
  | { kind: "acquire"; epoch: number; at: string; mono_ms: number }
  | {
      kind: "finish";
      epoch: number;
      at: string;
      status: Status;
      reason: Reason | null;
      exit: Exit | null;
      progress?: { message?: string | null; at?: string | null; count?: number };
    }
  | { kind: "reap"; at: string; reason: Reason }
  | { kind: "cancel"; at: string }
  /** A routine renewal written to the lease file (6.5), not the record. */
  | { kind: "lease"; epoch: number; at: string; mono_ms: number; beats: number; beat_at: string | null };

export type WriteOutcome =
  | {
      result: "written";
      record: LeaseRecord;
      /** For a `lease` write: the lease file after it. */
      leaseFile?: Buffer;
    }
  | {
      result: "refused";
      /** What the writer is told: the current status and epoch. */
      status: Status;
      epoch: number;
      /** The element a refused finish appended to `late` (without its note), else null. */
      late: Record<string, unknown> | null;
      /** The record as stored after the refusal. */
      record: LeaseRecord;
      /** For a `lease` write: the lease file, unchanged (null: there is none). */
      leaseFile?: Buffer | null;
    };

/** What a write does to a record (sections 5 and 6.4), as the writing vectors check it. */
export function applyWrite(current: LeaseRecord | null, write: Write, leaseFile?: Uint8Array | string | null): WriteOutcome;

// ---------- beats ----------

export interface BeatOptions {
  /** The progress message: the heartbeat file's first line (one line, at most 1024 bytes). */
  message?: string;
  /**
   * Declares a silence: the next beat is due no sooner than this many ms from now (the wrapper cuts
   * it to one day); the lease keeps being renewed, so a crash is still seen at once.
   */
  extendMs?: number;
  /** Where $TETHER_HEARTBEAT_FILE is looked up; default process.env. */
  env?: NodeJS.ProcessEnv;
}
/** One file beat inside a `--heartbeat file` job; false (doing nothing) outside one. */
export function beat(options?: BeatOptions): boolean;

// ---------- the Tether class over the CLI ----------

export interface TetherOptions {
  /** The tether binary; default $TETHER_BIN, else `tether` on PATH. */
  bin?: string;
  /** The state directory (`--dir`); default the CLI's ($TETHER_DIR, ...). */
  dir?: string;
  /** The environment the CLI runs with (and jobs inherit unless `run` gets `env`). */
  env?: NodeJS.ProcessEnv;
}

export interface ProbeOptions {
  spec: string;
  everyMs?: number;
  timeoutMs?: number;
  failures?: number;
  graceMs?: number;
}

export interface RunOptions {
  id?: string;
  name?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Job metadata (`--meta KEY=VALUE`). */
  meta?: Record<string, string>;
  /** At most one active job per key (`--unique KEY`). */
  unique?: string;
  /** With `unique`: wait for an active holder to end, then start, instead of rejecting. */
  uniqueWait?: boolean;
  heartbeat?: "none" | "notify" | "file" | "output";
  ttlMs?: number;
  intervalMs?: number;
  graceMs?: number;
  /** A liveness probe (`--probe SPEC`), issue 16. */
  probe?: string | ProbeOptions;
  onStall?: "kill" | "keep";
}

/** A job as `tether status --json` shows it, with Dates and milliseconds. */
export interface Job {
  id: string;
  name: string | null;
  status: Status;
  reason: Reason | null;
  active: boolean;
  exit: Exit | null;
  argv: string[];
  cwd: string | null;
  meta: Record<string, string>;
  /** The key of `run({ unique })`, or null. */
  unique: string | null;
  createdAt: Date;
  finishedAt: Date | null;
  progress: { message: string | null; at: Date | null; count: number };
  lease: { epoch: number; intervalMs: number; ttlMs: number; renewedAt: Date | null; expiresAt: Date | null };
  holder: { pid: number; start: string; bootId: string; host: string; timeNs: string | null; pidNs: string | null };
  child: { pid: number; start: string; pgid: number } | null;
  late: Array<Record<string, unknown> & { at: Date | null }>;
  /** The rule of section 7.4 that decided the status. */
  rule: Rule | null;
  /** `result` only: the last lines of the job's log. */
  logTail?: string[];
  /** The CLI's object as printed. */
  raw: Record<string, unknown>;
}

/** What `watch` yields: a job that changed, or one that was removed. */
export type WatchEvent = Job | { id: string; removed: true };

export interface StartedJob {
  id: string;
  holderPid: number;
  childPid: number | null;
  log: string | null;
  record: Job;
}

export interface ListOptions {
  active?: boolean;
  status?: Status[];
  meta?: Record<string, string>;
}

export type CancelOutcome = "cancelled" | "already-ended";

export class Tether {
  constructor(options?: TetherOptions);
  readonly bin: string;
  readonly dir: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** Starts `argv` as a detached job; resolves once it is recorded running. */
  run(argv: string[], options?: RunOptions): Promise<StartedJob>;
  /** The job as the verdict sees it, or null for an unknown id. */
  status(id: string): Promise<Job | null>;
  list(options?: ListOptions): Promise<Job[]>;
  /** Resolves when the job is terminal or lost (no polling); WaitTimeoutError after timeoutMs. */
  wait(id: string, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<Job>;
  /** Several jobs at once: all ended, or with `any` the first; WaitTimeoutError after timeoutMs. */
  waitAll(ids: string[], options?: { any?: boolean; timeoutMs?: number; signal?: AbortSignal }): Promise<Job[]>;
  /** An ended job with its log tail; JobActiveError while it runs. */
  result(id: string): Promise<Job>;
  cancel(id: string, options?: { graceMs?: number }): Promise<{ outcome: CancelOutcome; job: Job | null; raw: unknown }>;
  remove(id: string, options?: { force?: boolean }): Promise<void>;
  watch(options?: { meta?: Record<string, string>; active?: boolean; signal?: AbortSignal }): AsyncGenerator<WatchEvent, void, undefined>;
}

// ---------- errors ----------

/**
 * The CLI's name for an error: the `error` of its `--json` error object (protocol.md section 9).
 * test/errors.test.js checks this list against src/errors.js and the CLI's JSON schema.
 */
export type ErrorKind =
  | "usage"
  | "active"
  | "no-such-job"
  | "corrupt"
  | "state-dir"
  | "id-taken"
  | "io"
  | "refused"
  | "unique-held"
  | "holder-unreachable"
  | "timeout"
  | "not-executable"
  | "not-found";

export class TetherError extends Error {
  constructor(
    message: string,
    info?: { code?: number | null; kind?: ErrorKind | string | null; args?: string[]; stderr?: string; cause?: unknown },
  );
  /** The CLI's exit code; null when it did not run. */
  readonly code: number | null;
  /**
   * The CLI's kind of error: its `--json` error's `error`, else the kind of `code`; null when
   * unknown (no code, or a code this client does not know). A string, as a newer CLI may add kinds.
   */
  readonly kind: ErrorKind | (string & {}) | null;
  readonly args: string[];
  readonly stderr: string;
}
export class TetherNotFound extends TetherError {}
export class UsageError extends TetherError {}
export class JobActiveError extends TetherError {}
export class CancelRefusedError extends TetherError {}
export class JobNotFoundError extends TetherError {}
export class CorruptRecordError extends TetherError {}
export class StateDirError extends TetherError {}
export class TetherIOError extends TetherError {}
export class WaitTimeoutError extends TetherError {}
export class CommandNotFoundError extends TetherError {}
export class IdTakenError extends TetherError {}
export class UniqueHeldError extends TetherError {
  /** The id of the active job that holds the key, when the message names it. */
  readonly holder: string | null;
}
/**
 * Exit 13 from `cancel` on a cluster store: the job's holder on another host did not answer the
 * cancel request (protocol.md 11.9). The request stands; the job turns lost when its lease expires.
 */
export class HolderUnreachableError extends TetherError {}
