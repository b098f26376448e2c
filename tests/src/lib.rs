//! Shared helpers for Herd's end-to-end tests: build the service binaries,
//! start them as real processes on free loopback ports, wait for each to
//! say it listens (explicit readiness, never a sleep), and connect real gRPC
//! clients with the right tokens.

pub mod procs;

pub use procs::{
    ADMIN_TOKEN, CONTROL_TOKEN, EngineProc, GatewayOpts, GatewayProc, Proc, admin_client, bin_path,
    engine_client, engine_token, free_port, gateway_client, wait_until, workspace_root,
};
