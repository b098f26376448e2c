//! Herd's test support: shared helpers for the end-to-end tests (build the
//! service binaries, start them as real processes on free loopback ports,
//! wait for each to say it listens, never a sleep, and connect real gRPC
//! clients with the right tokens), and wire-level venue simulators with
//! their own helpers ([`kraken_sim`], [`kraken_harness`]).

// Tests unwrap freely (style.md); library code may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod kraken_harness;
pub mod kraken_sim;
pub mod procs;

pub use procs::{
    ADMIN_TOKEN, CONTROL_TOKEN, EngineProc, GatewayOpts, GatewayProc, Proc, admin_client, bin_path,
    engine_client, engine_token, free_port, gateway_client, wait_until, workspace_root,
};
