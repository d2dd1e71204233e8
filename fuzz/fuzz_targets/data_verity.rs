//! The data disk's dm-verity parameters as the guest's init reads them from
//! the kernel command line: parameters that parse print to a parameter that
//! parses to the same values.
#![no_main]
use kokon_wire::vm::DataVerity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cmdline) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(verity)) = DataVerity::from_cmdline(cmdline) {
        assert_eq!(
            DataVerity::from_cmdline(&verity.param()),
            Ok(Some(verity.clone()))
        );
        let _ = verity.table_params("/dev/vda");
    }
});
