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

/// The serialized `FileDescriptorSet` of the standard `grpc.health.v1` service, whose code
/// connectrpc-health has: for reflection, so that health checks need no proto file either.
pub const HEALTH_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/health.fds.bin"));
