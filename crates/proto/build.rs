//! Generates the tokenbroker.v1 types and services from `proto/` with protox (a pure-Rust
//! protobuf compiler, so no system `protoc` is needed), and saves the file descriptor set for
//! gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: cargo reuses a compiled build
    // script for another checkout of the same package (a worktree sharing the target dir).
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = "tokenbroker/v1/token_broker.proto";
    println!("cargo:rerun-if-changed={}", proto_root.join(file).display());

    let fds = protox::compile([file], [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tokenbroker_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
