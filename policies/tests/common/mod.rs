//! Helpers shared by the policy tests: fixtures from ../shared.
#![allow(dead_code, clippy::unwrap_used)]

/// Reads a fixture from `../shared/fixtures` (beside the repository).
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(path),
    )
    .unwrap()
}
