//! The TDX measurements' parsers on arbitrary bytes: the OVMF GUID table and
//! TDVF metadata (MRTD), and the kernel's PE/COFF headers (Authenticode,
//! RTMR1). QEMU takes firmware only in 64 KiB units, so the input is also
//! tried as the end of a zero-filled image of such a size, where the GUID
//! table and the metadata offsets it points at are the fuzzer's.
#![no_main]
use kokon_measure::tdx;
use libfuzzer_sys::fuzz_target;

const UNIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let _ = tdx::mrtd(data);
    let size = data.len().div_ceil(UNIT).max(1) * UNIT;
    let mut image = vec![0u8; size];
    if let Some(tail) = image.get_mut(size - data.len()..) {
        tail.copy_from_slice(data);
    }
    let _ = tdx::mrtd(&image);
    let _ = tdx::rtmr1_events(data);
    let _ = tdx::expected(&tdx::TdxInputs {
        ovmf: &image,
        kernel: data,
        initrd: data,
        cmdline: std::str::from_utf8(data).unwrap_or(""),
    });
});
