//! The SEV-SNP certificate table (configfs-tsm auxblob) from the host.
#![no_main]
use kokon_attestation::snp::cert_table;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = cert_table::parse(data) {
        let _ = cert_table::chain(&entries);
    }
});
