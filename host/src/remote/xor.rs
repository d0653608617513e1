//! Prometheus's XOR chunk encoding (`chunkenc.EncXOR`), which streamed
//! remote-read responses carry. Ember's head chunks use the same ideas but
//! their own layout, so samples are re-encoded here.
//!
//! Layout: a big-endian `u16` sample count, then a bit stream (most
//! significant bit first): the first timestamp as a zig-zag varint and the
//! first value's 64 bits; the second timestamp as an unsigned varint delta
//! and an XOR-encoded value; every later timestamp as a delta of deltas in
//! 1/14/17/20/64-bit buckets (prefixes `0`, `10`, `110`, `1110`, `1111`)
//! and an XOR-encoded value (`0` same value; `10` + meaningful bits inside
//! the previous window; `11` + 5 bits leading zeros + 6 bits length + bits).

use crate::model::Sample;

/// Most samples per chunk, as Prometheus cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte.
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, b: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if b && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    /// The low `n` bits of `v`, most significant first.
    fn bits(&mut self, v: u64, n: u8) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bits(b as u64, 8);
    }
}

fn uvarint(w: &mut BitWriter, mut v: u64) {
    while v >= 0x80 {
        w.byte((v as u8) | 0x80);
        v >>= 7;
    }
    w.byte(v as u8);
}

fn varint(w: &mut BitWriter, v: i64) {
    uvarint(w, ((v << 1) ^ (v >> 63)) as u64);
}

/// Whether `x` fits Prometheus's `nbits` delta-of-delta bucket.
fn bit_range(x: i64, nbits: u8) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

/// Encodes up to [`SAMPLES_PER_CHUNK`] samples (sorted by time) as one chunk.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.bits(samples.len() as u64, 16);
    let (mut prev_t, mut prev_delta, mut prev_v) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0xffu8, 0u8);
    for (i, s) in samples.iter().enumerate() {
        let bits = s.v.to_bits();
        match i {
            0 => {
                varint(&mut w, s.t);
                w.bits(bits, 64);
            }
            1 => {
                let delta = s.t - prev_t;
                uvarint(&mut w, delta as u64);
                xor_value(&mut w, bits, prev_v, &mut leading, &mut trailing);
                prev_delta = delta;
            }
            _ => {
                let delta = s.t - prev_t;
                let dod = delta - prev_delta;
                if dod == 0 {
                    w.bit(false);
                } else if bit_range(dod, 14) {
                    w.bits(0b10, 2);
                    w.bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    w.bits(0b110, 3);
                    w.bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    w.bits(0b1110, 4);
                    w.bits(dod as u64, 20);
                } else {
                    w.bits(0b1111, 4);
                    w.bits(dod as u64, 64);
                }
                xor_value(&mut w, bits, prev_v, &mut leading, &mut trailing);
                prev_delta = delta;
            }
        }
        prev_t = s.t;
        prev_v = bits;
    }
    w.bytes
}

fn xor_value(w: &mut BitWriter, v: u64, prev: u64, leading: &mut u8, trailing: &mut u8) {
    let delta = v ^ prev;
    if delta == 0 {
        w.bit(false);
        return;
    }
    w.bit(true);
    let mut new_leading = delta.leading_zeros() as u8;
    let new_trailing = delta.trailing_zeros() as u8;
    // Five bits hold the count of leading zeros.
    if new_leading >= 32 {
        new_leading = 31;
    }
    if *leading != 0xff && new_leading >= *leading && new_trailing >= *trailing {
        w.bit(false);
        w.bits(delta >> *trailing, 64 - *leading - *trailing);
        return;
    }
    *leading = new_leading;
    *trailing = new_trailing;
    w.bit(true);
    w.bits(new_leading as u64, 5);
    let sig = 64 - new_leading - new_trailing;
    // 64 significant bits are written as 0 in the 6-bit field.
    w.bits(sig as u64, 6);
    w.bits(delta >> new_trailing, sig);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    struct BitReader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl BitReader<'_> {
        fn bit(&mut self) -> bool {
            let b = self.bytes[self.pos / 8] >> (7 - self.pos % 8) & 1 == 1;
            self.pos += 1;
            b
        }
        fn bits(&mut self, n: u8) -> u64 {
            (0..n).fold(0, |acc, _| (acc << 1) | self.bit() as u64)
        }
        fn uvarint(&mut self) -> u64 {
            let mut v = 0u64;
            for shift in (0..).step_by(7) {
                let b = self.bits(8);
                v |= (b & 0x7f) << shift;
                if b < 0x80 {
                    break;
                }
            }
            v
        }
    }

    fn sign_extend(v: u64, n: u8) -> i64 {
        ((v << (64 - n)) as i64) >> (64 - n)
    }

    /// A decoder written from the same description, for round trips.
    pub(crate) fn decode(bytes: &[u8]) -> Vec<Sample> {
        let n = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
        let mut r = BitReader {
            bytes: &bytes[2..],
            pos: 0,
        };
        let mut out: Vec<Sample> = Vec::new();
        let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
        let (mut leading, mut trailing) = (0u8, 0u8);
        for i in 0..n {
            if i == 0 {
                let z = r.uvarint();
                t = ((z >> 1) as i64) ^ -((z & 1) as i64);
                v = r.bits(64);
            } else {
                if i == 1 {
                    delta = r.uvarint() as i64;
                } else {
                    let dod = if !r.bit() {
                        0
                    } else if !r.bit() {
                        sign_extend(r.bits(14), 14)
                    } else if !r.bit() {
                        sign_extend(r.bits(17), 17)
                    } else if !r.bit() {
                        sign_extend(r.bits(20), 20)
                    } else {
                        r.bits(64) as i64
                    };
                    delta += dod;
                }
                t += delta;
                if r.bit() {
                    if r.bit() {
                        leading = r.bits(5) as u8;
                        let mut sig = r.bits(6) as u8;
                        if sig == 0 {
                            sig = 64;
                        }
                        trailing = 64 - leading - sig;
                    }
                    let sig = 64 - leading - trailing;
                    v ^= r.bits(sig) << trailing;
                }
            }
            out.push(Sample {
                t,
                v: f64::from_bits(v),
            });
        }
        out
    }

    #[test]
    fn round_trips() {
        let mut samples = Vec::new();
        let mut t = 1_700_000_000_000i64;
        for i in 0..120 {
            t += match i % 7 {
                0 => 15_000,
                1 => 15_001,
                2 => 14_000,
                3 => 100_000,
                4 => 1_000_000,
                5 => 90_000_000,
                _ => 15_000,
            };
            let v = match i % 5 {
                0 => i as f64,
                1 => -0.0,
                2 => f64::from_bits(crate::model::STALE_NAN_BITS),
                3 => 1e300 / (i as f64 + 1.0),
                _ => 0.1 * i as f64,
            };
            samples.push(Sample { t, v });
        }
        for n in [1, 2, 3, 120] {
            assert_eq!(decode(&encode(&samples[..n])), samples[..n]);
        }
        let neg = [Sample { t: -5, v: 1.0 }, Sample { t: 10, v: 1.0 }];
        assert_eq!(decode(&encode(&neg)), neg);
    }
}
