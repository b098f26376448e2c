//! The grid's "cycle" journal row written directly: the same bytes as
//! `serde_json::to_string(&CycleRecord)` (fields in declaration order,
//! decimals as rust_decimal's serde strings, ids escaped as serde_json
//! escapes them) without serde_json's generic serializer.

use rust_decimal::Decimal;

use super::slot::{CycleRecord, Trade};

/// `c` as compact JSON, byte for byte what `serde_json::to_string(c)` gives.
pub fn cycle_json(c: &CycleRecord) -> String {
    // The capacity serde_json starts with, grown the same way: the same
    // allocations, reallocations and frees as `serde_json::to_string`, so
    // the run's heap evolves as before (with 320 bytes up front, or one
    // allocation of the final size, a year run twice in one process peaked
    // at 186 MB instead of 160).
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"slot_id\":");
    push_int(&mut out, u64::from(c.slot_id), false);
    out.extend_from_slice(match c.trade {
        Trade::A => b",\"trade\":\"A\"",
        Trade::B => b",\"trade\":\"B\"",
    });
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(c.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"position_id\":");
    push_str(&mut out, &c.position_id);
    out.extend_from_slice(b",\"exit_order_id\":");
    push_str(&mut out, &c.exit_order_id);
    for (name, d) in [
        (&b",\"entry_price\":\""[..], &c.entry_price),
        (b"\",\"exit_price\":\"", &c.exit_price),
        (b"\",\"volume\":\"", &c.volume),
        (b"\",\"entry_fee\":\"", &c.entry_fee),
        (b"\",\"exit_fee\":\"", &c.exit_fee),
        (b"\",\"gross\":\"", &c.gross),
        (b"\",\"net\":\"", &c.net),
        (b"\",\"target_price\":\"", &c.target_price),
    ] {
        out.extend_from_slice(name);
        push_decimal(&mut out, d);
    }
    out.extend_from_slice(b"\",\"time_ms\":");
    push_int(&mut out, c.time_ms.unsigned_abs(), c.time_ms < 0);
    out.push(b'}');
    // Only ASCII and the ids' own UTF-8 went in: never the fallback.
    String::from_utf8(out).unwrap_or_else(|_| serde_json::to_string(c).unwrap_or_default())
}

/// A JSON string: written as is when nothing in it needs an escape, else
/// through serde_json (the same escapes it writes inside a struct).
fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(serde_json::to_string(s).unwrap_or_default().as_bytes());
    }
}

/// An integer in decimal, `-` first when `negative`.
fn push_int(out: &mut Vec<u8>, v: u64, negative: bool) {
    let mut buf = [b'0'; 40];
    let mut i = crate::mantissa_digits(u128::from(v), &mut buf);
    if i == buf.len() {
        i -= 1; // zero: one digit
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..]);
}

/// `d` as rust_decimal's `Serialize` writes it (`to_str_internal(d, true,
/// None)`): `-` when the sign bit is set (also for a zero), the mantissa's
/// digits with the point `scale` digits from the right (zeros padded in
/// front, `0` before a leading point), `0` for a zero of scale 0.
fn push_decimal(out: &mut Vec<u8>, d: &Decimal) {
    // 96-bit mantissa: at most 29 digits; scale at most 28. The buffer
    // starts as zeros, so the padding in front is already there.
    const LEN: usize = 40;
    let mut digits = [b'0'; LEN];
    let mut i = crate::mantissa_digits(d.mantissa().unsigned_abs(), &mut digits);
    let scale = d.scale() as usize;
    i = i.min(LEN - scale);
    let n = LEN - i;
    let mut text = [0u8; LEN + 3];
    let mut k = 0;
    if d.is_sign_negative() {
        text[k] = b'-';
        k += 1;
    }
    if n == 0 {
        text[k] = b'0';
        k += 1;
    } else {
        let whole = n - scale;
        if whole == 0 {
            text[k] = b'0';
            k += 1;
        } else {
            text[k..k + whole].copy_from_slice(&digits[i..i + whole]);
            k += whole;
        }
        if scale > 0 {
            text[k] = b'.';
            k += 1;
            text[k..k + scale].copy_from_slice(&digits[LEN - scale..]);
            k += scale;
        }
    }
    out.extend_from_slice(&text[..k]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::grid::slot::CycleKind;

    /// xorshift64*: a fixed sequence, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Decimals of every shape: zero and negative zero at every scale,
    /// small and full 96-bit mantissas, both signs, scales 0-28, results of
    /// arithmetic (trailing zeros kept).
    fn decimal(r: &mut Rng) -> Decimal {
        let scale = r.below(29) as u32;
        let negative = r.below(2) == 0;
        match r.below(8) {
            0 => Decimal::from_parts(0, 0, 0, negative, scale),
            1 => Decimal::from_parts(r.below(1000) as u32, 0, 0, negative, scale),
            2 => Decimal::from_parts(r.next() as u32, 0, 0, negative, scale),
            3 => Decimal::from_parts(r.next() as u32, r.next() as u32, 0, negative, scale),
            4 => Decimal::from_parts(
                r.next() as u32,
                r.next() as u32,
                r.next() as u32,
                negative,
                scale,
            ),
            5 => Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, negative, scale),
            6 => {
                // Just over u64::MAX, where the wide path starts.
                Decimal::from_parts(r.below(3) as u32, 0, 1, negative, scale)
            }
            _ => {
                let a = Decimal::new(r.below(2_000_000) as i64 - 1_000_000, r.below(9) as u32);
                let b = Decimal::new(r.below(20_000) as i64 + 1, r.below(5) as u32);
                match r.below(3) {
                    0 => a * b,
                    1 => a - b,
                    _ => a / b,
                }
            }
        }
    }

    fn id(r: &mut Rng) -> String {
        const PARTS: &[&str] = &[
            "g-1-A-", "pos", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", " ", "é", "€", "𝄞",
            "\u{7f}", "/", "123", "x-y_z",
        ];
        let n = r.below(5);
        (0..n)
            .map(|_| PARTS[r.below(PARTS.len() as u64) as usize])
            .collect()
    }

    fn record(r: &mut Rng) -> CycleRecord {
        const KINDS: [CycleKind; 6] = CycleKind::ALL;
        CycleRecord {
            slot_id: match r.below(3) {
                0 => 0,
                1 => u32::MAX,
                _ => r.next() as u32,
            },
            trade: if r.below(2) == 0 { Trade::A } else { Trade::B },
            kind: KINDS[r.below(6) as usize],
            position_id: id(r),
            exit_order_id: id(r),
            entry_price: decimal(r),
            exit_price: decimal(r),
            volume: decimal(r),
            entry_fee: decimal(r),
            exit_fee: decimal(r),
            gross: decimal(r),
            net: decimal(r),
            target_price: decimal(r),
            time_ms: match r.below(4) {
                0 => 0,
                1 => i64::MIN,
                2 => i64::MAX,
                _ => r.next() as i64,
            },
        }
    }

    #[test]
    fn cycle_rows_equal_serde_json() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let c = record(&mut r);
            let (ours, theirs) = (cycle_json(&c), serde_json::to_string(&c).unwrap());
            assert_eq!(ours, theirs, "{c:?}");
            // The same final room on the heap as serde_json's row.
            assert_eq!(ours.capacity(), theirs.capacity(), "{c:?}");
        }
    }

    /// `d` as a quoted JSON string, by `push_decimal`.
    fn decimal_text(d: &Decimal) -> String {
        let mut s = b"\"".to_vec();
        push_decimal(&mut s, d);
        s.push(b'"');
        String::from_utf8(s).unwrap()
    }

    #[test]
    fn decimals_equal_their_serde_text() {
        let cases = [
            Decimal::ZERO,
            -Decimal::ZERO,
            Decimal::from_parts(0, 0, 0, true, 5),
            Decimal::from_parts(0, 0, 0, false, 28),
            Decimal::new(5, 28),
            Decimal::new(-5, 28),
            Decimal::new(123_456, 3),
            Decimal::new(-123_456, 6),
            Decimal::new(-123_456, 7),
            Decimal::new(1, 0),
            Decimal::new(-100, 2),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, true, 28),
            Decimal::from_parts(0, 0, 1, false, 19),
            Decimal::from_parts(u32::MAX, u32::MAX, 0, false, 20),
        ];
        for d in cases {
            assert_eq!(
                decimal_text(&d),
                serde_json::to_string(&d).unwrap(),
                "{d:?}"
            );
        }
        // Every scale for a few mantissas, both signs.
        for scale in 0..=28 {
            for m in [0i64, 1, 9, 10, 12_345, i64::MAX] {
                for d in [Decimal::new(m, scale), -Decimal::new(m, scale)] {
                    assert_eq!(decimal_text(&d), serde_json::to_string(&d).unwrap());
                }
            }
        }
    }
}
