//! A small seeded generator and the distributions the model draws from.
//!
//! SplitMix64: tiny, fast, and the same sequence on every platform, which is what a
//! byte-identical report needs. Not for keys (the model signs nothing).

/// A deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent generator for one purpose of one run (`stream` names it), so
    /// adding draws to one part of the model does not shift every other part.
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut mixer = Self(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
        Self(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // The top 53 bits: every value is exactly representable.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[low, high)`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "a draw from an empty range");
        // Lemire's multiply-shift: the bias is below 2^-32 for any n a model holds.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Exponentially distributed with the given mean (`mean > 0`).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 − unit() is in (0, 1]: the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }
}

/// A stable hash of two numbers, for draws that must not depend on the order in which
/// the model asks (whether renter `a` has heard of provider `b`'s offer yet).
pub fn mix(a: u64, b: u64) -> u64 {
    Rng::stream(a, b).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_streams_differ() {
        let draws = |seed, stream| {
            let mut rng = Rng::stream(seed, stream);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7, 1), draws(7, 1));
        assert_ne!(draws(7, 1), draws(7, 2));
        assert_ne!(draws(7, 1), draws(8, 1));
    }

    #[test]
    fn draws_stay_in_range_and_have_their_mean() {
        let mut rng = Rng::new(42);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(7) < 7);
            sum += rng.exponential(3.0);
        }
        let mean = sum / f64::from(n);
        assert!((mean - 3.0).abs() < 0.1, "mean {mean}");
    }
}
