//! Generates the gRPC types from `lazaret/v1/*.proto` with the system `protoc` (Debian's
//! `protobuf-compiler`, installed by `scripts/bootstrap.sh`; set `PROTOC` to use another).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "lazaret/v1/inventory.proto",
        "lazaret/v1/agent.proto",
        "lazaret/v1/fleet.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // The descriptor set lets the agent serve gRPC reflection (grpcurl, grpcio tooling).
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("lazaret_v1.bin");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(descriptors)
        .compile_protos(&protos, &["."])?;
    Ok(())
}
