//! The public `core.v1` wire contract: generated protobuf messages and Connect
//! service stubs, plus the compiled descriptor set for gRPC reflection.
//!
//! Proto types stop at the server and connector edges; conversions to domain
//! types live next to the code that needs them.

#![allow(clippy::all, missing_docs)]

connectrpc::include_generated!();

/// The serialized `FileDescriptorSet` of every proto this crate compiles,
/// with imports, for the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gatehouse.fds.bin"));
