//! Kraken spot adapter (being built).
