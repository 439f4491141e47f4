//! What the property tests share.

/// xorshift64*: a deterministic generator with no dependency, so that
/// every failing case is reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `METADWR_FUZZ_ITERATIONS` and `METADWR_FUZZ_SEED`, with defaults.
pub fn iterations_and_seed(iterations: u64, seed: u64) -> (u64, u64) {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        var("METADWR_FUZZ_ITERATIONS", iterations),
        var("METADWR_FUZZ_SEED", seed),
    )
}
