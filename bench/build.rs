//! Compiles the no-op service used as the gRPC baseline, with the same pure-Rust `protox`
//! compiler as Ally's own protos.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/allybench/v1/noop.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
