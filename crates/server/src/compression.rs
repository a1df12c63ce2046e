//! The compressions the API reads and writes: gzip and zstd, and `deflate` (zlib, RFC 1950),
//! the third gRPC names: grpcio sends it with `compression=grpc.Compression.Deflate`, and HTTP
//! clients with `Content-Encoding: deflate`.

use std::io::{Read, Write};
use std::sync::OnceLock;

use bytes::Bytes;
use connectrpc::CompressionRegistry;
use connectrpc::compression::CompressionProvider;
use connectrpc::{ConnectError, ErrorCode};
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

/// The one registry, for the RPC layer and for what reads a request before it.
pub fn registry() -> &'static CompressionRegistry {
    static REGISTRY: OnceLock<CompressionRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| CompressionRegistry::default().register(DeflateProvider))
}

pub struct DeflateProvider;

impl CompressionProvider for DeflateProvider {
    fn name(&self) -> &'static str {
        "deflate"
    }

    fn compress(&self, data: &[u8]) -> Result<Bytes, ConnectError> {
        let mut encoder = ZlibEncoder::new(Vec::with_capacity(data.len() / 2), Compression::fast());
        encoder
            .write_all(data)
            .and_then(|()| encoder.finish())
            .map(Bytes::from)
            .map_err(|error| ConnectError::new(ErrorCode::Internal, format!("deflate: {error}")))
    }

    fn decompressor<'a>(&self, data: &'a [u8]) -> Result<Box<dyn Read + 'a>, ConnectError> {
        Ok(Box::new(ZlibDecoder::new(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_it_compresses_it_reads_back_within_a_limit() {
        let text = b"select 1; ".repeat(1000);
        let compressed = DeflateProvider.compress(&text).unwrap();
        assert!(compressed.len() < text.len() / 10);
        assert_eq!(DeflateProvider.decompress_with_limit(&compressed, text.len()).unwrap(), &text[..]);
        assert!(DeflateProvider.decompress_with_limit(&compressed, 100).is_err(), "a bomb is cut off");
        assert!(DeflateProvider.decompress_with_limit(b"not zlib", 100).is_err());
    }
}
