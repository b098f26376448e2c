//! Herd's test support: shared helpers for the end-to-end tests ([`procs`]
//! builds the service binaries, starts them as real processes on free
//! loopback ports, waits for each to say it listens, never a sleep, and
//! connects real gRPC clients with the right tokens), and wire-level venue
//! simulators over the paper matching core: [`kraken_sim`] (with
//! [`kraken_harness`], and [`kraken_herd`]: a whole herd of real processes on
//! the Kraken simulator with the fault suite's invariant checks) and [`bybit_sim`] (on the small HTTP/1.1 server in
//! [`http1`]); [`kube_fake`], a fake of the Kubernetes Lease API for the
//! gateway's Lease tests.

pub mod browser;
pub mod bybit_sim;
pub mod funding_leg;
pub mod http1;
pub mod kraken_harness;
pub mod kraken_herd;
pub mod kraken_sim;
pub mod kube_fake;
pub mod load;
pub mod procs;
pub mod shape;
pub mod soak;
pub mod state_file;

pub use procs::{
    ADMIN_TOKEN, CONTROL_TOKEN, EngineProc, GatewayOpts, GatewayProc, HerdctlUp, Proc,
    admin_client, bin_path, engine_client, engine_token, free_port, gateway_client, process_alive,
    wait_until, workspace_root,
};
