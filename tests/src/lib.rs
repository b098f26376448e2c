//! Wire-level venue simulators and shared helpers for Herd's end-to-end
//! tests.
//!
//! [`procs`] builds the service binaries, starts them as real processes on
//! free loopback ports, waits for each to say it listens (explicit
//! readiness, never a sleep), and connects real gRPC clients with the right
//! tokens. [`bybit_sim`] is a Bybit V5 REST simulator over the paper
//! matching core (also the `bybit-sim` binary); [`http1`] is the small
//! HTTP/1.1 server it runs on.

pub mod bybit_sim;
pub mod http1;
pub mod procs;

pub use procs::{
    ADMIN_TOKEN, CONTROL_TOKEN, EngineProc, GatewayProc, Proc, admin_client, bin_path,
    engine_client, engine_token, gateway_client, wait_until, workspace_root,
};
