//! Herd's gRPC API, generated from the .proto files in this crate.
//!
//! `gateway` is `herd.gateway.v1` (engines -> gateway), `engine` is
//! `herd.engine.v1` (operators -> engine). [`FILE_DESCRIPTOR_SET`] is what the
//! servers register with tonic-reflection so grpcurl needs no .proto files.

#![allow(clippy::doc_markdown, clippy::large_enum_variant)]

/// `herd.gateway.v1`.
pub mod gateway {
    tonic::include_proto!("herd.gateway.v1");
}

/// `herd.engine.v1`.
pub mod engine {
    tonic::include_proto!("herd.engine.v1");
}

/// The encoded `FileDescriptorSet` of both packages, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/herd_descriptor.bin"));

pub mod admin_http;
pub mod answer;
pub mod auth;
pub mod config;
pub mod events;
pub mod json;
pub mod prom;
pub mod reload;
pub mod report;
pub mod secret;
pub mod serving;

pub use secret::Secret;
