// A liveness probe of the broker for `tether run --probe`: exit 0 if the broker answers a ping,
// 1 if it refuses the connection or closes it. A wedged broker accepts and never answers: the
// probe then hangs until tether's --probe-timeout kills it, which counts as a failure.
//
//   node probe.mjs SOCKET

import { connect } from "node:net";

const conn = connect(process.argv[2] ?? "");
conn.on("connect", () => conn.write(`${JSON.stringify({ ping: true })}\n`));
conn.on("data", () => process.exit(0));
conn.on("error", () => process.exit(1));
conn.on("close", () => process.exit(1));
