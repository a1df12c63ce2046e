//! Generates the `core.v1` messages and Connect stubs from `proto/`.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so a fresh machine needs
//! nothing installed by hand. The descriptor set is written to `OUT_DIR` too:
//! the server embeds it to answer gRPC reflection.

use buffa_codegen::BytesRepr;
use connectrpc_build::CodeGenConfig;

/// Request messages whose JSON form must reject unknown fields: the public
/// schema sets `additionalProperties: false`, and ours follow it. Binary protobuf still skips
/// them. Names without a package are `core.v1`'s.
const STRICT_JSON_REQUESTS: &[&str] = &[
    "GetSessionRequest",
    "ListSessionsV2Request",
    "ListSessionAggregationsRequest",
    "CreateSessionTerminationRequest",
    "CancelSessionRequest",
    "GetSessionTranscriptRequest",
    "gatehouse.sessions.v1.ListSessionStatementsRequest",
    "gatehouse.keys.v1.GetCallerKeyRequest",
];

fn main() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc for this platform");
    let well_known = protoc_bin_vendored::include_path().expect("vendored well-known protos");
    // Build scripts run single-threaded; connectrpc-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", &protoc) };

    let mut buffa = CodeGenConfig::default();
    buffa.generate_json = true;
    // Shared, not copied, between a batch in flight and its retry.
    buffa.bytes_fields.push((".gatehouse.connector.v1.EncodedReportRequest.events".into(), BytesRepr::Bytes));
    for name in STRICT_JSON_REQUESTS {
        let name = if name.contains('.') { format!(".{name}") } else { format!(".core.v1.{name}") };
        buffa.message_attributes.push((name, "#[serde(deny_unknown_fields)]".into()));
    }

    connectrpc_build::Config::new()
        .buffa_config(buffa)
        .files(&[
            "proto/core/v1/sessions.proto",
            "proto/core/v1/list_metadata.proto",
            "proto/gatehouse/connector/v1/connector.proto",
            "proto/gatehouse/sessions/v1/statements.proto",
            "proto/gatehouse/keys/v1/keys.proto",
        ])
        .includes(&[std::path::PathBuf::from("proto"), well_known])
        .include_file("_connectrpc.rs")
        .emit_descriptor_set("gatehouse.fds.bin")
        .compile()
        .expect("generate core.v1 code");

    // The standard health service's schema, for reflection only: its code comes from
    // connectrpc-health, which serves it, but ships no descriptors for clients such as grpcurl.
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let status = std::process::Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.join("health.fds.bin").display()))
        .args(["-I", "proto", "grpc/health/v1/health.proto"])
        .status()
        .expect("run protoc");
    assert!(status.success(), "protoc failed on the health service's proto");
    println!("cargo:rerun-if-changed=proto/grpc/health/v1/health.proto");
}
