//! The SEV-SNP launch digest on arbitrary OVMF images: the footer table,
//! SEV metadata, reset block and hashes table parsers never panic. Each
//! input is measured as given, and zero-padded at the front to whole pages
//! (the footer table sits at the image's end, so the fuzzer's bytes reach
//! it past the size check); each with and without a kernel.
#![no_main]
use kokon_measure::snp::{launch_digest, SnpInputs, VcpuType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut padded = vec![0u8; (4096 - data.len() % 4096) % 4096];
    padded.extend_from_slice(data);
    for ovmf in [data, &padded] {
        for kernel in [None, Some(&b"kernel"[..])] {
            let _ = launch_digest(&SnpInputs {
                ovmf,
                kernel,
                initrd: kernel.map(|_| &b"initrd"[..]),
                cmdline: kernel.map(|_| "console=ttyS0"),
                vcpus: 2,
                vcpu_type: VcpuType::EpycMilan,
                guest_features: 1,
            });
        }
    }
});
