// A broker on a Unix socket, like the one the seed's workers wait on: each request line
// `{"turn": N}` gets `{"turn": N, "ok": true}` after --delay-ms. With --answer K it answers K
// requests in all and then goes silent while still accepting connections and keeping them open:
// the wedge of the seed's incident, where the process lives and nothing ever completes. A
// `{"ping": true}` line is answered at once while the broker is healthy (probe.mjs sends it).
//
//   node broker.mjs SOCKET [--answer K] [--delay-ms MS]

import { createServer } from "node:net";
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { answer: { type: "string" }, "delay-ms": { type: "string", default: "50" } },
});
const [socket] = positionals;
if (!socket) {
  console.error("usage: node broker.mjs SOCKET [--answer K] [--delay-ms MS]");
  process.exit(2);
}
let left = values.answer === undefined ? Infinity : Number(values.answer);
const delayMs = Number(values["delay-ms"]);

rmSync(socket, { force: true });
const server = createServer((conn) => {
  let buf = "";
  conn.on("data", (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (left <= 0) continue; // wedged: read, never answer
      const { turn, ping } = JSON.parse(line);
      if (ping) {
        conn.write(`${JSON.stringify({ pong: true })}\n`); // a liveness probe: answered at once
        continue;
      }
      left--;
      setTimeout(() => conn.write(`${JSON.stringify({ turn, ok: true })}\n`), delayMs);
    }
  });
  conn.on("error", () => {});
});
server.listen(socket, () => console.log(`broker listening on ${socket}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.close(() => process.exit(0)));
