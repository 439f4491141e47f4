//! FNV-1a, 64 bits: the digest that binds a header to its page slots
//! (`format.rs`) and that keeps a file handle short (`identity.rs`). Not a
//! checksum against damage (CRC-32C is), a compact fingerprint of bytes
//! that are themselves checked.

/// FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}
