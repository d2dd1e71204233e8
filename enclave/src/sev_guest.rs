//! SEV-SNP evidence through `/dev/sev-guest` (`SNP_GET_EXT_REPORT`), for
//! guests whose kernel predates configfs-tsm (Linux < 6.7).
//!
//! This is the one place in kokon with `unsafe` code: the ioctl hands the
//! kernel pointers to three buffers owned by this function, each of the size
//! the request declares, all living until the call returns. Everything the
//! kernel writes back (status, report size, certificate table) is then read
//! with bounds checks, as untrusted data.
//!
//! Layouts from the kernel's `include/uapi/linux/sev-guest.h` and AMD's SEV
//! SNP Firmware ABI (`MSG_REPORT_RSP`: status, report size, 24 reserved
//! bytes, then the report).
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context};

/// The device node of the SEV guest driver.
pub const SEV_GUEST_DEVICE: &str = kokon_wire::SEV_GUEST_DEVICE;
/// Size of the response buffer the kernel fills.
const RESPONSE_LEN: usize = 4000;
/// Offset of the report in `MSG_REPORT_RSP`.
const REPORT_OFFSET: usize = 32;
/// Initial certificate buffer: four pages (the kernel wants page multiples).
const CERTS_LEN: usize = 4 * 4096;
/// Largest certificate buffer accepted when the host asks for more.
const MAX_CERTS_LEN: usize = 64 * 4096;
/// `exitinfo2` VMM error: the certificate buffer is too small.
const VMM_ERR_INVALID_LEN: u32 = 1;

#[repr(C)]
struct ReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

#[repr(C)]
struct ExtReportReq {
    data: ReportReq,
    certs_address: u64,
    certs_len: u32,
}

#[repr(C)]
struct GuestRequest {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

nix::ioctl_readwrite!(
    /// `SNP_GET_EXT_REPORT`: `_IOWR('S', 0x2, struct snp_guest_request_ioctl)`.
    snp_get_ext_report,
    b'S',
    0x2,
    GuestRequest
);

/// An SNP report and the host's certificate table.
#[derive(Debug, Clone)]
pub struct ExtReport {
    /// The 1184-byte attestation report.
    pub report: Vec<u8>,
    /// The certificate table (GHCB layout), empty when the host gave none.
    pub certs: Vec<u8>,
}

/// Reads `MSG_REPORT_RSP` from the kernel's response buffer.
pub fn parse_response(response: &[u8]) -> anyhow::Result<Vec<u8>> {
    let word = |at: usize| -> anyhow::Result<u32> {
        response
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .context("SNP report response is truncated")
    };
    let status = word(0)?;
    if status != 0 {
        bail!("the SNP firmware answered status {status:#x} to the report request");
    }
    let size = word(4)? as usize;
    if size != kokon_attestation::snp::report::REPORT_LEN {
        bail!(
            "the SNP firmware returned a {size}-byte report, expected {}",
            kokon_attestation::snp::report::REPORT_LEN
        );
    }
    response
        .get(REPORT_OFFSET..REPORT_OFFSET + size)
        .map(<[u8]>::to_vec)
        .context("SNP report response is shorter than its report")
}

/// Requests a report binding `report_data` (VMPL 0) and the host's certificates.
pub fn ext_report(device: &Path, report_data: &[u8; 64]) -> anyhow::Result<ExtReport> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .with_context(|| format!("opening {}", device.display()))?;
    let mut certs_len = CERTS_LEN;
    loop {
        let mut certs = vec![0u8; certs_len];
        let mut response = [0u8; RESPONSE_LEN];
        let mut request = ExtReportReq {
            data: ReportReq {
                user_data: *report_data,
                vmpl: 0,
                rsvd: [0; 28],
            },
            certs_address: certs.as_mut_ptr() as u64,
            certs_len: u32::try_from(certs.len()).context("certificate buffer size")?,
        };
        let mut guest = GuestRequest {
            msg_version: 1,
            req_data: &mut request as *mut ExtReportReq as u64,
            resp_data: response.as_mut_ptr() as u64,
            exitinfo2: 0,
        };
        // SAFETY: `guest` points at `request` and `response`, and `request`
        // at `certs`, all owned here, alive until the call returns, and of
        // the sizes declared (`ExtReportReq`, RESPONSE_LEN, `certs_len`).
        let result = unsafe { snp_get_ext_report(file.as_raw_fd(), &mut guest) };
        let vmm_error = (guest.exitinfo2 >> 32) as u32;
        match result {
            Ok(_) => {
                let report = parse_response(&response)?;
                let used = usize::try_from(request.certs_len)
                    .unwrap_or(0)
                    .min(certs.len());
                certs.truncate(used);
                return Ok(ExtReport { report, certs });
            }
            Err(_) if vmm_error == VMM_ERR_INVALID_LEN && certs_len < MAX_CERTS_LEN => {
                let wanted = usize::try_from(request.certs_len).unwrap_or(MAX_CERTS_LEN);
                certs_len = wanted.clamp(certs_len + 4096, MAX_CERTS_LEN);
            }
            Err(e) => bail!(
                "SNP_GET_EXT_REPORT on {} failed: {e} (firmware error {:#x}, VMM error {vmm_error:#x})",
                device.display(),
                guest.exitinfo2 as u32
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_layouts_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<ReportReq>(), 96);
        assert_eq!(std::mem::size_of::<ExtReportReq>(), 112);
        assert_eq!(std::mem::size_of::<GuestRequest>(), 32);
    }

    #[test]
    fn responses_are_read_with_bounds_and_status_checks() {
        let mut r = vec![0u8; RESPONSE_LEN];
        r[4..8].copy_from_slice(&1184u32.to_le_bytes());
        r[32] = 2;
        assert_eq!(parse_response(&r).unwrap().len(), 1184);
        let mut bad = r.clone();
        bad[0] = 0x16;
        assert!(parse_response(&bad)
            .unwrap_err()
            .to_string()
            .contains("status 0x16"));
        let mut big = r.clone();
        big[4..8].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(parse_response(&big).is_err());
        assert!(parse_response(&r[..100]).is_err());
        assert!(parse_response(&[]).is_err());
    }

    /// Runs only inside an SEV-SNP guest with the driver loaded.
    #[test]
    fn a_real_sev_guest_returns_a_report_binding_the_data() {
        let device = Path::new(SEV_GUEST_DEVICE);
        if !device.exists() {
            eprintln!("skipped: {SEV_GUEST_DEVICE} not present (not an SEV-SNP guest)");
            return;
        }
        let data = [0x5a; 64];
        let ext = ext_report(device, &data).unwrap();
        let report = kokon_attestation::snp::Report::parse(&ext.report).unwrap();
        assert_eq!(report.report_data, data);
    }
}
