// Errors of the tether CLI as typed classes. One table maps the CLI's exit codes (protocol.md
// section 9) to classes, so callers branch with `instanceof` instead of on numbers and messages.

/**
 * The CLI's error kinds by exit code: the `error` of its `--json` error object (protocol.md section
 * 9, schema/cli-output.schema.json). A test checks this table against the schema and index.d.ts.
 * @type {Record<number, string>}
 */
export const KIND_BY_CODE = {
  2: "usage",
  5: "active",
  6: "no-such-job",
  7: "corrupt",
  8: "state-dir",
  9: "id-taken",
  10: "io",
  11: "refused",
  12: "unique-held",
  13: "holder-unreachable",
  124: "timeout",
  126: "not-executable",
  127: "not-found",
};

/**
 * Any failure of a tether command. `code` is its exit code (null when it did not run); `kind` the
 * CLI's name for it (its `--json` error's `error`, else the one its code has), null when unknown.
 */
export class TetherError extends Error {
  /**
   * @param {string} message the CLI's one-line message, without its `tether: ` prefix
   * @param {{ code?: number | null, kind?: string | null, args?: string[], stderr?: string, cause?: unknown }} [info]
   */
  constructor(message, info = {}) {
    super(message, info.cause === undefined ? undefined : { cause: info.cause });
    this.name = new.target.name;
    /** @type {number | null} */
    this.code = info.code ?? null;
    /** @type {string | null} */
    this.kind = info.kind ?? (this.code === null ? null : (KIND_BY_CODE[this.code] ?? null));
    /** @type {string[]} */
    this.args = info.args ?? [];
    /** @type {string} */
    this.stderr = info.stderr ?? "";
  }
}

/** The tether binary could not be started: not on PATH, or not at `bin` / $TETHER_BIN. */
export class TetherNotFound extends TetherError {}
/** Exit 2: the CLI rejected the arguments (an unknown option, a malformed id or duration). */
export class UsageError extends TetherError {}
/** Exit 5 from `result`: the job has not ended yet. */
export class JobActiveError extends TetherError {}
/** Exit 11 from `cancel` (5 before the CLI's one table): the job's process cannot be proven to be ours, so it was not signalled. */
export class CancelRefusedError extends TetherError {}
/** Exit 6: no such job, or a prefix matching several. */
export class JobNotFoundError extends TetherError {}
/** Exit 7: a record is corrupt or of a newer protocol version; it is left as it is. */
export class CorruptRecordError extends TetherError {}
/** Exit 8: the state directory is missing, not private, not owned by the user, or unusable. */
export class StateDirError extends TetherError {}
/** Exit 10: an I/O error. */
export class TetherIOError extends TetherError {}
/** Exit 124: `wait` gave up after its timeout; the job is still active. */
export class WaitTimeoutError extends TetherError {}
/** Exit 126/127 from `run`: the command is not executable, or not found. */
export class CommandNotFoundError extends TetherError {}
/** Exit 9 (2 before the CLI had a code of its own): `run` with an id that is already taken. */
export class IdTakenError extends TetherError {}
/**
 * Exit 13 from `cancel` on a cluster store (protocol.md 11.9): the job's holder, on another host, did
 * not answer the cancel request. The request stands: the holder cancels the job if it comes back
 * while its lease holds; otherwise the job turns lost when the lease expires.
 */
export class HolderUnreachableError extends TetherError {}
/**
 * Exit 12 from `run --unique KEY`: another active job holds the key; `holder` is its id.
 */
export class UniqueHeldError extends TetherError {
  /** @param {string} message @param {{ code?: number | null, kind?: string | null, args?: string[], stderr?: string, cause?: unknown }} [info] */
  constructor(message, info) {
    super(message, info);
    /** @type {string | null} */
    this.holder = / job (\S+) holds this key/.exec(message)?.[1] ?? null;
  }
}

/** @type {Record<number, typeof TetherError>} */
const BY_CODE = {
  2: UsageError,
  5: JobActiveError,
  6: JobNotFoundError,
  7: CorruptRecordError,
  8: StateDirError,
  9: IdTakenError,
  10: TetherIOError,
  11: CancelRefusedError,
  12: UniqueHeldError,
  13: HolderUnreachableError,
  124: WaitTimeoutError,
  126: CommandNotFoundError,
  127: CommandNotFoundError,
};

/**
 * The error for a command that exited `code`. In `--json` mode the CLI writes errors as a JSON
 * object on stderr (`{"code": N, "message": ...}`); otherwise as `tether: message` lines.
 * @param {number} code
 * @param {string[]} args
 * @param {string} stderr
 * @param {Record<number, typeof TetherError>} [overrides] per-command meanings of a code
 */
export function errorFor(code, args, stderr, overrides = {}) {
  const json = jsonError(stderr);
  const message = json.message || messageOf(stderr) || `tether ${args.join(" ")} exited ${code}`;
  let Class = overrides[code] ?? BY_CODE[code] ?? TetherError;
  // Until the CLI has a code of its own for a taken id, it says so with a usage error.
  if (code === 2 && / already exists in /.test(message)) Class = IdTakenError;
  return new Class(message, { code, kind: json.kind, args, stderr });
}

/**
 * The `--json` error object's message and kind, when stderr starts with one.
 * @param {string} stderr
 * @returns {{ message: string | null, kind: string | null }}
 */
function jsonError(stderr) {
  const text = stderr.trim();
  if (text.startsWith("{")) {
    try {
      const j = JSON.parse(text.split("\n")[0]);
      const kind = typeof j?.error === "string" ? j.error : null;
      const message = typeof j?.message === "string" ? j.message : kind;
      return { message, kind };
    } catch {
      /* not JSON: the text form */
    }
  }
  return { message: null, kind: null };
}

/** @param {string} stderr */
function messageOf(stderr) {
  const text = stderr.trim();
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const own = lines.filter((l) => l.startsWith("tether: "));
  const pick = own.length > 0 ? own[own.length - 1] : (lines.find((l) => l.startsWith("error: ")) ?? lines[0] ?? "");
  return pick.replace(/^tether: /, "").replace(/^error: /, "");
}
