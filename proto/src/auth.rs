//! The one constant-time comparison of bearer tokens (and other secrets
//! compared against what a caller presented), shared by the gateway's and
//! the engine's interceptors.

use subtle::ConstantTimeEq;

/// True when `presented` equals `expected`. The time taken depends on the
/// lengths only, never on where the first differing byte is, so a caller
/// cannot find a token byte by byte.
pub fn token_matches(expected: &[u8], presented: &[u8]) -> bool {
    expected.ct_eq(presented).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        let cases: [(&[u8], &[u8], bool); 7] = [
            (b"token-of-e1", b"token-of-e1", true),
            (b"", b"", true),
            (b"token-of-e1", b"token-of-e2", false),
            (b"token-of-e1", b"Token-of-e1", false),
            (b"token-of-e1", b"token-of-e", false),
            (b"token-of-e1", b"token-of-e11", false),
            (b"token", b"", false),
        ];
        for (expected, presented, want) in cases {
            assert_eq!(
                token_matches(expected, presented),
                want,
                "{expected:?} {presented:?}"
            );
        }
    }
}
