//! OCSP responses on arbitrary bytes, checked for each certificate of a
//! real H100 chain that NVIDIA's responder answers for, as a host would
//! read one (its next update) and as a client verifies it.
#![no_main]
use kokon_attestation::nvidia::{read_chain, OCSP_POSITIONS};
use kokon_attestation::ocsp::{check, next_update};
use kokon_attestation::pki::ChainLink;
use libfuzzer_sys::fuzz_target;

const CHAIN: &[u8] =
    include_bytes!("../../../shared/fixtures/nvidia/trustee_hopper_cert_chain_case1.txt");
/// 2025-08-21T12:00:00Z.
const NOW: i64 = 1_755_777_600;

fuzz_target!(|data: &[u8]| {
    let Ok(chain) = read_chain(CHAIN) else { return };
    let Ok(links) = ChainLink::parse_chain(&chain) else { return };
    for position in OCSP_POSITIONS {
        let (Some(cert), Some(issuer)) = (links.get(position), links.get(position + 1)) else {
            return;
        };
        let _ = next_update(data, cert, issuer);
        let _ = check(data, cert, issuer, NOW, "fuzzed");
    }
});
