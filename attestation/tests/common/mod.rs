//! Helpers shared by the attestation tests: fixtures from ../shared.
#![allow(dead_code, clippy::unwrap_used)]

use kokon_attestation::{roots, TrustAnchors};

/// Reads a fixture from `../shared/fixtures` (beside the repository).
pub fn fixture(path: &str) -> Vec<u8> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| {
        panic!(
            "fixture {} unreadable ({e}); ../shared must sit beside the repository",
            full.display()
        )
    })
}

/// Intel's SGX root as the only anchor.
pub fn intel() -> TrustAnchors {
    TrustAnchors {
        roots: vec![roots::intel_sgx_root().unwrap()],
    }
}

/// Parses RFC 3339 into Unix seconds.
pub fn at(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}
