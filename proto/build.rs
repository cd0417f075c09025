//! Generates the gRPC types from `lazaret/v1/*.proto` with the system `protoc` (Debian's
//! `protobuf-compiler`, installed by `scripts/bootstrap.sh`; set `PROTOC` to use another).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["lazaret/v1/inventory.proto"];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["."])?;
    Ok(())
}
