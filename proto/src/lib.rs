//! Lazaret's wire contract: the protobuf package `lazaret.v1` and the one place where wire types
//! and `lazaret-core`'s domain types are converted into each other.
//!
//! Nothing else in the workspace converts between the two: handlers and clients call the
//! `From`/`TryFrom` impls in [`convert`].
#![forbid(unsafe_code)]

pub mod convert;

/// Generated code for `package lazaret.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("lazaret.v1");
}

/// The encoded descriptors of `package lazaret.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lazaret_v1.bin"));
