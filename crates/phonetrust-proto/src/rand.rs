//! Injected randomness, so that anything random (AES keys, IVs, session ids) can be
//! replaced by a repeatable source in tests.

/// A source of random bytes.
pub trait RandomSource: Send + Sync {
    /// Fill `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), openssl::error::ErrorStack>;
}

/// OpenSSL's CSPRNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), openssl::error::ErrorStack> {
        openssl::rand::rand_bytes(buf)
    }
}

/// A deterministic source for tests: a counter stretched with SHA-256. Never use it for
/// real keys.
#[derive(Debug, Default)]
pub struct SeededRandom {
    seed: u64,
    counter: std::sync::atomic::AtomicU64,
}

impl SeededRandom {
    /// A source that yields the same bytes for the same seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl RandomSource for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), openssl::error::ErrorStack> {
        for chunk in buf.chunks_mut(32) {
            let n = self
                .counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut input = self.seed.to_be_bytes().to_vec();
            input.extend_from_slice(&n.to_be_bytes());
            let d = openssl::sha::sha256(&input);
            chunk.copy_from_slice(d.get(..chunk.len()).unwrap_or_default());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_repeatable_and_os_is_not() {
        let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
        SeededRandom::new(7).fill(&mut a).unwrap();
        SeededRandom::new(7).fill(&mut b).unwrap();
        assert_eq!(a, b);
        OsRandom.fill(&mut a).unwrap();
        OsRandom.fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
