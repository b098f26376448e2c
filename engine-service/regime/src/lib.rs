//! Regime detection (being built).
