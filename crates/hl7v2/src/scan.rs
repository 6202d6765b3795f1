//! Finding every field separator and segment terminator in one pass.
//!
//! HL7 fields are short (a few bytes), so calling a general substring search once per field
//! costs more than the search itself. This scanner compares 16 bytes at a time against the
//! three delimiter bytes (SSE2, always present on x86-64; a scalar loop elsewhere) and hands
//! out the positions of the set bits, so dense delimiters and long base64 runs are both
//! cheap.

/// Iterator over the positions of `a`, `b` or `c` in a byte slice.
pub(crate) struct Delims<'t> {
    t: &'t [u8],
    /// Start of the chunk `mask` describes.
    base: usize,
    /// Next chunk to load.
    next: usize,
    mask: u32,
    a: u8,
    b: u8,
    c: u8,
}

impl<'t> Delims<'t> {
    pub(crate) fn new(t: &'t [u8], a: u8, b: u8, c: u8) -> Self {
        Delims { t, base: 0, next: 0, mask: 0, a, b, c }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn chunk_mask(&self, at: usize) -> u32 {
        use std::arch::x86_64::*;
        debug_assert!(at + 16 <= self.t.len());
        // SAFETY: `at + 16 <= len` is checked by the caller, so the unaligned 16-byte load
        // stays inside the slice; SSE2 is part of the x86-64 baseline.
        unsafe {
            let v = _mm_loadu_si128(self.t.as_ptr().add(at) as *const __m128i);
            let m = _mm_or_si128(
                _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(self.a as i8)),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(self.b as i8)),
                ),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(self.c as i8)),
            );
            _mm_movemask_epi8(m) as u32
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn chunk_mask(&self, at: usize) -> u32 {
        let mut m = 0u32;
        for (i, &x) in self.t[at..at + 16].iter().enumerate() {
            if x == self.a || x == self.b || x == self.c {
                m |= 1 << i;
            }
        }
        m
    }
}

impl Iterator for Delims<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            if self.next + 16 <= self.t.len() {
                self.base = self.next;
                self.mask = self.chunk_mask(self.next);
                self.next += 16;
            } else if self.next < self.t.len() {
                // Tail shorter than a chunk.
                self.base = self.next;
                let mut m = 0u32;
                for (i, &x) in self.t[self.next..].iter().enumerate() {
                    if x == self.a || x == self.b || x == self.c {
                        m |= 1 << i;
                    }
                }
                self.mask = m;
                self.next = self.t.len();
            } else {
                return None;
            }
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.base + bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_as_naive() {
        let mut data = Vec::new();
        for i in 0..1000u32 {
            data.push(match i % 7 {
                0 => b'|',
                3 => b'\r',
                5 if i % 3 == 0 => b'\n',
                _ => b'a' + (i % 26) as u8,
            });
        }
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 999, 1000] {
            let t = &data[..len];
            let got: Vec<usize> = Delims::new(t, b'|', b'\r', b'\n').collect();
            let want: Vec<usize> =
                t.iter().enumerate().filter(|&(_, &b)| matches!(b, b'|' | b'\r' | b'\n')).map(|(i, _)| i).collect();
            assert_eq!(got, want, "len {len}");
        }
    }
}
