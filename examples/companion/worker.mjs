// The detached worker of one task, as the seed's companion spawns it: it runs a few turns against
// the broker and beats after each completed one. It has no timeout of its own (the seed's worker
// awaited the broker forever); tether's lease is what notices when it stops making progress.
//
//   node worker.mjs --broker SOCKET [--turns N] [--hog-mb MB]

import { connect } from "node:net";
import { parseArgs } from "node:util";
import { beat } from "../../clients/node/index.js"; // a project imports from "tether-lease"

const { values } = parseArgs({
  options: {
    broker: { type: "string" },
    turns: { type: "string", default: "3" },
    "hog-mb": { type: "string" },
  },
});

if (values["hog-mb"] !== undefined) {
  // Allocates and touches memory until the kernel's OOM killer (a cgroup limit) kills us.
  const hog = [];
  for (let i = 0; i < Number(values["hog-mb"]); i++) hog.push(Buffer.alloc(1 << 20, 1));
  console.log(`allocated ${hog.length} MiB and was not killed`);
}

const turns = Number(values.turns);
const conn = connect(values.broker ?? process.env.BROKER ?? "");
await new Promise((resolve, reject) => conn.once("connect", resolve).once("error", reject));
let buf = "";
/** @type {((line: string) => void) | null} */
let waiting = null;
conn.on("data", (chunk) => {
  buf += chunk;
  const nl = buf.indexOf("\n");
  if (nl >= 0 && waiting) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const w = waiting;
    waiting = null;
    w(line);
  }
});
const session = process.env.TASK_SESSION ?? "?";
for (let turn = 1; turn <= turns; turn++) {
  conn.write(`${JSON.stringify({ turn })}\n`);
  const reply = await new Promise((resolve) => (waiting = resolve)); // no timeout, as in the seed
  console.log(`session ${session} turn ${turn}: ${reply}`);
  beat({ message: `turn ${turn}/${turns} done` }); // after real progress, never from a timer
}
console.log(`result: ${turns} turns done`);
conn.end();
