//! The one error type of the regime crate.

/// Everything that can go wrong while parsing candles, computing features, fitting the HMM or
/// running a detector. Nothing in this crate panics on input data; it returns one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegimeError {
    /// A candle CSV row could not be parsed (line numbers are 1-based and count the header).
    #[error("candle csv line {line}: {message}")]
    Csv {
        /// 1-based line number in the file.
        line: usize,
        /// What was wrong with the line.
        message: String,
    },
    /// A candle holds a value the features cannot use (non-finite, non-positive price,
    /// negative volume).
    #[error("candle {index} (open_time_ms {open_time_ms}): {message}")]
    InvalidCandle {
        /// Index of the candle in the slice given.
        index: usize,
        /// The candle's open time.
        open_time_ms: i64,
        /// What was wrong with it.
        message: String,
    },
    /// Not enough data for the requested operation.
    #[error("too few {what}: have {have}, need at least {need}")]
    TooFew {
        /// What was counted (candles, observations, ...).
        what: &'static str,
        /// How many were given.
        have: usize,
        /// The minimum required.
        need: usize,
    },
    /// Parameters or observations with inconsistent shapes or invalid values.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The thing that was invalid.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A numerical computation produced a non-finite value; the inputs were too extreme.
    #[error("numerical failure: {0}")]
    Numerical(String),
}

pub(crate) fn invalid(what: &'static str, message: impl Into<String>) -> RegimeError {
    RegimeError::Invalid {
        what,
        message: message.into(),
    }
}
