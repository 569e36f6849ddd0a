//! Code generated from `proto/` by `build.rs`.

/// The `ally.v1` package.
pub mod ally {
    /// Generated code; the proto comments are written for every language, not for clippy.
    #[allow(clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("ally.v1");
    }
}

/// Encoded `FileDescriptorSet` of every file under `proto/`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ally_descriptor.bin"));
