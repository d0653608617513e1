//! Compressed sample chunks for the head, after the Gorilla paper
//! (Pelkonen et al., VLDB 2015): timestamps as delta-of-delta in a few
//! variable-width buckets, values as XOR against the previous value with the
//! meaningful-bit window reused when it fits. Regular scrapes of slowly
//! changing values cost a few bits per sample instead of 16 bytes.
//!
//! Values are stored as raw bits, so NaN payloads and the stale marker come
//! back bit-exact.

use crate::model::Sample;

/// Samples per chunk before a new one is started; small enough that an
/// out-of-order insert (decode, insert, re-encode) stays cheap.
pub const CHUNK_SAMPLES: u16 = 120;

#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push(&mut self, value: u64, bits: u8) {
        let mut remaining = bits;
        while remaining > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(remaining);
            let shift = remaining - take;
            let chunk = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            remaining -= take;
        }
    }

    fn bit(&mut self, b: bool) {
        self.push(u64::from(b), 1);
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn take(&mut self, bits: u8) -> Option<u64> {
        let mut out = 0u64;
        for _ in 0..bits {
            let byte = *self.bytes.get(self.pos / 8)?;
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            out = (out << 1) | u64::from(bit);
            self.pos += 1;
        }
        Some(out)
    }

    fn bit(&mut self) -> Option<bool> {
        self.take(1).map(|b| b == 1)
    }
}

/// Delta-of-delta buckets: (prefix, prefix bits, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

fn fits(v: i64, bits: u8) -> bool {
    let half = 1i64 << (bits - 1);
    v >= -half && v < half
}

/// An append-only compressed run of samples.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    bits: BitWriter,
    count: u16,
    min_t: i64,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    leading: u8,
    trailing: u8,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.last_t
    }

    pub fn last(&self) -> Option<Sample> {
        (self.count > 0).then(|| Sample {
            t: self.last_t,
            v: f64::from_bits(self.last_v),
        })
    }

    /// Heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.bits.bytes.capacity()
    }

    /// Appends a sample newer than every sample in the chunk.
    pub fn push(&mut self, s: Sample) {
        let v = s.v.to_bits();
        if self.count == 0 {
            self.bits.push(s.t as u64, 64);
            self.bits.push(v, 64);
            self.min_t = s.t;
            self.leading = 0xff;
        } else {
            let delta = s.t.wrapping_sub(self.last_t);
            let dod = delta.wrapping_sub(self.last_delta);
            if dod == 0 {
                self.bits.bit(false);
            } else if let Some(&(prefix, pbits, vbits)) =
                DOD_BUCKETS.iter().find(|(_, _, b)| fits(dod, *b))
            {
                self.bits.push(prefix, pbits);
                self.bits.push(dod as u64 & ((1u64 << vbits) - 1), vbits);
            } else {
                self.bits.push(0b1111, 4);
                self.bits.push(dod as u64, 64);
            }
            self.last_delta = delta;
            let xor = v ^ self.last_v;
            if xor == 0 {
                self.bits.bit(false);
            } else {
                self.bits.bit(true);
                let leading = (xor.leading_zeros() as u8).min(31);
                let trailing = xor.trailing_zeros() as u8;
                if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
                    // Fits the previous window: reuse it.
                    self.bits.bit(false);
                    let sig = 64 - self.leading - self.trailing;
                    self.bits.push(xor >> self.trailing, sig);
                } else {
                    self.bits.bit(true);
                    let sig = 64 - leading - trailing;
                    self.bits.push(u64::from(leading), 5);
                    // 64 significant bits is written as 0.
                    self.bits.push(u64::from(sig % 64), 6);
                    self.bits.push(xor >> trailing, sig);
                    self.leading = leading;
                    self.trailing = trailing;
                }
            }
        }
        self.count += 1;
        self.last_t = s.t;
        self.last_v = v;
    }

    /// Every sample, in time order.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.count as usize);
        self.decode_into(&mut out);
        out
    }

    pub fn decode_into(&self, out: &mut Vec<Sample>) {
        if self.count == 0 {
            return;
        }
        let mut r = BitReader {
            bytes: &self.bits.bytes,
            pos: 0,
        };
        let decoded = (|| -> Option<()> {
            let mut t = r.take(64)? as i64;
            let mut v = r.take(64)?;
            out.push(Sample {
                t,
                v: f64::from_bits(v),
            });
            let (mut delta, mut leading, mut trailing) = (0i64, 0u8, 0u8);
            for _ in 1..self.count {
                let dod = if !r.bit()? {
                    0
                } else if !r.bit()? {
                    sign_extend(r.take(14)?, 14)
                } else if !r.bit()? {
                    sign_extend(r.take(17)?, 17)
                } else if !r.bit()? {
                    sign_extend(r.take(20)?, 20)
                } else {
                    r.take(64)? as i64
                };
                delta = delta.wrapping_add(dod);
                t = t.wrapping_add(delta);
                if r.bit()? {
                    if r.bit()? {
                        leading = r.take(5)? as u8;
                        let sig = r.take(6)? as u8;
                        let sig = if sig == 0 { 64 } else { sig };
                        trailing = 64 - leading - sig;
                    }
                    let sig = 64 - leading - trailing;
                    v ^= r.take(sig)? << trailing;
                }
                out.push(Sample {
                    t,
                    v: f64::from_bits(v),
                });
            }
            Some(())
        })();
        debug_assert!(decoded.is_some(), "chunk decoding ran out of bits");
    }

    /// Re-encodes from sorted samples (after an out-of-order insert or a truncation).
    pub fn from_samples(samples: &[Sample]) -> Chunk {
        let mut c = Chunk::default();
        for s in samples {
            c.push(*s);
        }
        c
    }
}

fn sign_extend(v: u64, bits: u8) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(samples: &[Sample]) {
        let c = Chunk::from_samples(samples);
        let got = c.samples();
        assert_eq!(got.len(), samples.len());
        for (a, b) in got.iter().zip(samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits());
        }
    }

    #[test]
    fn regular_scrapes_are_small() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 15_000,
                v: 42.0,
            })
            .collect();
        let c = Chunk::from_samples(&samples);
        round_trip(&samples);
        // 16 bytes for the first sample, then ~2 bits per sample.
        assert!(c.heap_bytes() <= 64, "{} bytes", c.heap_bytes());
        let counter: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t: i * 15_000 + (i * 7919 % 5),
                v: (i * i) as f64,
            })
            .collect();
        let c = Chunk::from_samples(&counter);
        round_trip(&counter);
        assert!(c.heap_bytes() < 120 * 5, "{} bytes", c.heap_bytes());
    }

    #[test]
    fn special_values_are_bit_exact() {
        let stale = f64::from_bits(crate::model::STALE_NAN_BITS);
        round_trip(&[
            Sample { t: -5, v: f64::NAN },
            Sample { t: 0, v: stale },
            Sample { t: 1, v: -0.0 },
            Sample {
                t: 2,
                v: f64::INFINITY,
            },
            Sample {
                t: i64::MAX / 2,
                v: f64::MIN_POSITIVE,
            },
            Sample {
                t: i64::MAX,
                v: 1.0,
            },
        ]);
    }

    proptest! {
        #[test]
        fn any_sorted_samples_round_trip(mut ts in proptest::collection::vec(any::<i64>(), 1..300), vs in proptest::collection::vec(any::<u64>(), 300)) {
            ts.sort_unstable();
            ts.dedup();
            let samples: Vec<Sample> = ts.iter().zip(&vs).map(|(&t, &v)| Sample { t, v: f64::from_bits(v) }).collect();
            round_trip(&samples);
        }

        #[test]
        fn near_regular_samples_round_trip(jitter in proptest::collection::vec(-20i64..20, 1..300), vals in proptest::collection::vec(0u32..1000, 300)) {
            let samples: Vec<Sample> = jitter.iter().enumerate().zip(&vals)
                .map(|((i, j), v)| Sample { t: i as i64 * 15_000 + j, v: f64::from(*v) * 0.25 })
                .collect();
            round_trip(&samples);
        }
    }
}

/// One series' samples as a run of chunks, oldest first; only the last
/// chunk is appended to.
#[derive(Clone, Debug, Default)]
pub struct ChunkedSamples {
    chunks: Vec<Chunk>,
}

impl ChunkedSamples {
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Chunk::is_empty)
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum()
    }

    pub fn last(&self) -> Option<Sample> {
        self.chunks.last().and_then(Chunk::last)
    }

    pub fn first_t(&self) -> Option<i64> {
        self.chunks
            .first()
            .filter(|c| !c.is_empty())
            .map(Chunk::min_t)
    }

    /// The chunk that holds (or would hold) time `t`.
    fn chunk_for(&self, t: i64) -> Option<usize> {
        if self.chunks.is_empty() {
            return None;
        }
        Some(
            self.chunks
                .partition_point(|c| c.max_t() < t)
                .min(self.chunks.len() - 1),
        )
    }

    /// The stored sample at exactly `t`, if any.
    pub fn at(&self, t: i64) -> Option<Sample> {
        let c = &self.chunks[self.chunk_for(t)?];
        if t < c.min_t() || t > c.max_t() {
            return None;
        }
        let samples = c.samples();
        samples
            .binary_search_by_key(&t, |x| x.t)
            .ok()
            .map(|i| samples[i])
    }

    /// Inserts a sample; returns false when one with the same timestamp exists.
    pub fn insert(&mut self, s: Sample) -> bool {
        match self.last() {
            None => {
                self.chunks.push(Chunk::default());
            }
            Some(last) if s.t > last.t => {
                if self
                    .chunks
                    .last()
                    .is_some_and(|c| c.len() >= CHUNK_SAMPLES as usize)
                {
                    self.chunks.push(Chunk::default());
                }
            }
            Some(_) => return self.insert_older(s),
        }
        if let Some(c) = self.chunks.last_mut() {
            c.push(s);
        }
        true
    }

    /// Out-of-order path: decode the chunk, insert, re-encode.
    fn insert_older(&mut self, s: Sample) -> bool {
        let Some(i) = self.chunk_for(s.t) else {
            return false;
        };
        let mut samples = self.chunks[i].samples();
        match samples.binary_search_by_key(&s.t, |x| x.t) {
            Ok(_) => false,
            Err(pos) => {
                samples.insert(pos, s);
                self.chunks[i] = Chunk::from_samples(&samples);
                true
            }
        }
    }

    /// Samples in `[mint, maxt]`, in time order; only overlapping chunks are decoded.
    pub fn range(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        for c in self
            .chunks
            .iter()
            .filter(|c| !c.is_empty() && c.max_t() >= mint && c.min_t() <= maxt)
        {
            let start = out.len();
            c.decode_into(&mut out);
            if c.min_t() < mint || c.max_t() > maxt {
                let kept: Vec<Sample> = out
                    .drain(start..)
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .collect();
                out.extend(kept);
            }
        }
        out
    }

    pub fn all(&self) -> Vec<Sample> {
        self.range(i64::MIN, i64::MAX)
    }

    /// Drops the chunks that end before `cut`; a chunk spanning it is kept whole.
    pub fn drop_chunks_before(&mut self, cut: i64) {
        self.chunks.retain(|c| !c.is_empty() && c.max_t() >= cut);
    }

    pub fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.chunks.iter().map(Chunk::heap_bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    #[test]
    fn appends_inserts_ranges_and_truncates() {
        let mut run = ChunkedSamples::default();
        for t in (0..1000).step_by(2) {
            assert!(run.insert(Sample { t, v: t as f64 }));
        }
        assert!(run.chunks.len() >= 4);
        // Out of order into an old chunk, and a duplicate timestamp.
        assert!(run.insert(Sample { t: 101, v: -1.0 }));
        assert!(!run.insert(Sample { t: 100, v: 5.0 }));
        assert_eq!(run.at(101).map(|s| s.v), Some(-1.0));
        assert_eq!(run.at(103), None);
        let r = run.range(98, 104);
        assert_eq!(
            r.iter().map(|s| s.t).collect::<Vec<_>>(),
            [98, 100, 101, 102, 104]
        );
        assert_eq!(run.len(), 501);
        // Only whole chunks go: the chunk spanning 500 stays.
        run.drop_chunks_before(500);
        assert!(run.first_t().is_some_and(|t| t <= 500));
        assert!(run.range(500, i64::MAX).len() == 250);
        assert!(run.all().windows(2).all(|w| w[0].t < w[1].t));
    }
}
