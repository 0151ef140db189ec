// tether-lease: judge, beat and drive tether jobs from Node. See README.md.
export { judge, SKEW_ALLOWANCE_MS } from "./src/judge.js";
export { classifyRecord } from "./src/record.js";
export { foldLeaseFile, newestSlot } from "./src/leasefile.js";
export { applyWrite } from "./src/transition.js";
export { parseTimestamp } from "./src/time.js";
export { beat } from "./src/beat.js";
export { Tether } from "./src/tether.js";
export { localFacts, probePid, judgeLocal } from "./src/facts.js";
export {
  TetherError,
  TetherNotFound,
  UsageError,
  JobActiveError,
  CancelRefusedError,
  JobNotFoundError,
  CorruptRecordError,
  StateDirError,
  TetherIOError,
  WaitTimeoutError,
  CommandNotFoundError,
  IdTakenError,
  UniqueHeldError,
  HolderUnreachableError,
} from "./src/errors.js";
