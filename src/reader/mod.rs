//! What every reading command shares: judging a stored job (`settle`) and waiting for it to end
//! (`wait`).
//!
//! The verdict itself is pure and lives in `verdict`; this is the I/O around it (load the record,
//! probe the holder, persist a `lost` verdict, sleep on the store's changes), kept in one place so
//! `status`, `result`, `wait`, `inspect`, `cancel` and `gc` cannot disagree about a job.

pub mod settle;
pub mod wait;
