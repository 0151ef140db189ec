// A beat from inside a job, without a process: `tether run --heartbeat file` counts every change of
// $TETHER_HEARTBEAT_FILE as a beat and takes the file's first line as the progress message, or a
// JSON object's `message` and `extend` (protocol.md 6.7). Node's standard library has no Unix datagram sockets, so the notify
// channel is out of reach here; the file channel is the one a Node job uses.

import { openSync, writeSync, ftruncateSync, closeSync, futimesSync } from "node:fs";

/** The longest message written: the wrapper keeps the first line only, bounded. */
export const MAX_MESSAGE_BYTES = 1024;

/**
 * Beat once. Returns false, doing nothing, outside a file-heartbeat job (no
 * $TETHER_HEARTBEAT_FILE), so library code may call it unconditionally.
 *
 * With a message the file's content is replaced by that line: one `pwrite` at offset 0 and then a
 * truncate, never truncate-then-write, so a wrapper reading between the two sees the new first
 * line, not an empty file. Without a message only the file's times change, keeping the last message.
 *
 * @param {{ message?: string, extendMs?: number, env?: NodeJS.ProcessEnv }} [options]
 * @returns {boolean} whether a beat was written
 */
export function beat(options = {}) {
  const { message, extendMs, env = process.env } = options;
  const file = env.TETHER_HEARTBEAT_FILE;
  if (!file) return false;
  if (extendMs !== undefined && !(Number.isSafeInteger(extendMs) && extendMs >= 0)) {
    throw new RangeError(`beat({ extendMs }): a whole number of milliseconds >= 0, got ${extendMs}`);
  }
  const fd = openSync(file, "r+");
  try {
    if (message === undefined && extendMs === undefined) {
      const now = new Date();
      futimesSync(fd, now, now);
    } else {
      // protocol.md 6.7: a JSON object declares a silence (`extend`, ms; the wrapper cuts it to a
      // day); a plain first line is only a message.
      const text =
        extendMs === undefined
          ? sanitize(/** @type {string} */ (message))
          : JSON.stringify({ ...(message === undefined ? {} : { message: sanitize(message) }), extend: extendMs });
      const line = Buffer.from(`${text}\n`);
      writeSync(fd, line, 0, line.length, 0);
      ftruncateSync(fd, line.length);
    }
  } finally {
    closeSync(fd);
  }
  return true;
}

/** One line, no control characters, at most MAX_MESSAGE_BYTES of UTF-8. @param {string} message */
function sanitize(message) {
  // eslint-disable-next-line no-control-regex
  let text = String(message).replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  while (Buffer.byteLength(text) > MAX_MESSAGE_BYTES) text = text.slice(0, -1);
  return text;
}
