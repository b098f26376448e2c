//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so a
//! fresh machine needs no system protoc, and writes the encoded descriptor set
//! that the servers register for reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "herd/gateway/v1/gateway.proto",
        "herd/gateway/v1/fills.proto",
        "herd/engine/v1/engine.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("herd_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // The engine's messages serialize as JSON with their proto field names
    // (decimals are strings already): `/api/status`, herdctl's JSON and the
    // dashboard all read GetStatus through this, with no copies by hand.
    tonic_prost_build::configure()
        .message_attribute(".herd.engine.v1", "#[derive(serde::Serialize)]")
        .field_attribute(
            ".herd.engine.v1.EngineStatus.mode",
            "#[serde(serialize_with = \"crate::json::mode\")]",
        )
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
