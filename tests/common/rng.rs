//! The tests' one random generator: fastrand's (already in the dependency tree through tempfile).
//! Randomized tests need variety and a replayable seed, not quality; the seed is printed.

/// A seeded generator; [`Rng::new`] prints its seed so a failure can be replayed.
pub struct Rng(fastrand::Rng);

impl Rng {
    /// Seeded from `TETHER_TORTURE_SEED` or, without it, the clock and pid; the seed is printed
    /// with `what` so a failing run can be replayed.
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("TETHER_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(clock_seed);
        eprintln!("{what}: seed {seed} (replay with TETHER_TORTURE_SEED={seed})");
        Rng::seeded(seed)
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.u64(..n) }
    }

    /// Uniform in [lo, hi); `lo` when the range is empty.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A seed that differs between runs and between processes started in the same nanosecond.
pub fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    t ^ ((std::process::id() as u64) << 32)
}
