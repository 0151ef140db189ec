// Running the tether binary: where it is found, and one call that returns its exit code and output.

import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { TetherNotFound } from "./errors.js";

/**
 * The binary to run: the `bin` option, else $TETHER_BIN, else `tether` looked up on PATH by the OS.
 * @param {string | undefined} bin
 * @param {NodeJS.ProcessEnv} env
 */
export function resolveBin(bin, env = process.env) {
  return bin || env.TETHER_BIN || "tether";
}

/**
 * @typedef {{ code: number, stdout: string, stderr: string }} Output
 * @typedef {{ cwd?: string, env?: NodeJS.ProcessEnv, signal?: AbortSignal,
 *             onLine?: (line: string) => void }} ExecOptions
 */

/**
 * Run `bin args...` to its end. Rejects with TetherNotFound when the binary cannot be started, and
 * with the signal's reason when `signal` aborts (the command then gets SIGTERM). A command killed
 * by a signal resolves with code 128 + N, as a shell reports it.
 * @param {string} bin
 * @param {string[]} args
 * @param {ExecOptions} [opts]
 * @returns {Promise<Output>}
 */
export function exec(bin, args, opts = {}) {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(opts.signal.reason);
    const child = spawn(bin, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    /** @type {Buffer[]} */ const out = [];
    /** @type {Buffer[]} */ const err = [];
    let pending = "";
    child.stdout.on("data", (b) => {
      out.push(b);
      if (opts.onLine) {
        pending += b.toString("utf8");
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const l of lines) opts.onLine(l);
      }
    });
    child.stderr.on("data", (b) => err.push(b));
    const onAbort = () => child.kill("SIGTERM");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    child.on("error", (e) => {
      opts.signal?.removeEventListener("abort", onAbort);
      const code = /** @type {NodeJS.ErrnoException} */ (e).code;
      if (code === "ENOENT" || code === "EACCES") {
        reject(
          new TetherNotFound(
            `cannot run the tether binary ${JSON.stringify(bin)} (${code}); install tether, put it on PATH, ` +
              "or pass { bin } or set TETHER_BIN",
            { cause: e, args },
          ),
        );
      } else reject(e);
    });
    child.on("close", (code, sig) => {
      opts.signal?.removeEventListener("abort", onAbort);
      if (opts.signal?.aborted) return reject(opts.signal.reason);
      if (opts.onLine && pending) opts.onLine(pending);
      const n = code ?? 128 + (sig ? signalNumber(sig) : 0);
      resolve({ code: n, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
  });
}

/** os.constants.signals maps names to numbers on every platform Node runs on. @param {string} sig */
function signalNumber(sig) {
  return /** @type {Record<string, number>} */ (osConstants.signals)[sig] ?? 0;
}
