//! TDX evidence without configfs-tsm (Linux < 6.7): the TDREPORT from
//! `/dev/tdx_guest` (`TDX_CMD_GET_REPORT0`), quoted by the host's Quote
//! Generation Service (QGS) over vsock, the path Intel's `libtdx_attest`
//! takes on such kernels. Also RTMR3 extension through the driver's legacy
//! `TDX_CMD_EXTEND_RTMR` ioctl, for kernels without the measurement sysfs.
//!
//! The ioctls are the `unsafe` code here: each hands the kernel a pointer to
//! a request owned by the calling function, of exactly the size the ioctl
//! number encodes. The QGS is on the untrusted host: its answer is parsed
//! with bounds ([`kokon_attestation::tdx::qgs`]) and checked to quote the
//! REPORTDATA asked for; the client then verifies the quote as usual.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use kokon_attestation::tdx::qgs::{self, TD_REPORT_LEN};
use kokon_attestation::tdx::{Measurement, Quote};

/// The TDX guest driver's device node.
pub const TDX_GUEST_DEVICE: &str = kokon_wire::TDX_GUEST_DEVICE;
/// Intel's configuration file naming the QGS vsock port (`port=4050`).
pub const TDX_ATTEST_CONF: &str = "/etc/tdx-attest.conf";
/// The host's vsock context ID.
pub const VSOCK_HOST_CID: u32 = 2;
/// How long the QGS may take to answer (it may fetch collateral first).
const QGS_TIMEOUT: Duration = Duration::from_secs(60);

#[repr(C)]
struct ReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; TD_REPORT_LEN],
}

#[repr(C)]
struct ExtendRtmrReq {
    data: [u8; 48],
    index: u8,
}

nix::ioctl_readwrite!(
    /// `TDX_CMD_GET_REPORT0`: `_IOWR('T', 1, struct tdx_report_req)`.
    tdx_get_report0,
    b'T',
    1,
    ReportReq
);

nix::ioctl_read!(
    /// `TDX_CMD_EXTEND_RTMR` of Intel's TDX guest kernels:
    /// `_IOR('T', 3, struct tdx_extend_rtmr_req)` (the driver reads it).
    tdx_extend_rtmr,
    b'T',
    3,
    ExtendRtmrReq
);

/// Where the Quote Generation Service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QgsAddress {
    /// A vsock address (on a TDX host: CID 2, the port of `/etc/tdx-attest.conf`).
    Vsock {
        /// Context ID.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A Unix socket (a QGS reachable inside the guest, or a test's).
    Unix(PathBuf),
}

impl std::str::FromStr for QgsAddress {
    type Err = String;
    /// `vsock:PORT`, `vsock:CID:PORT` or `unix:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("QGS address {s:?}: expected vsock:PORT, vsock:CID:PORT or unix:PATH");
        let number = |t: &str| t.parse::<u32>().map_err(|_| bad());
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("vsock:").ok_or_else(bad)?;
        match rest.split_once(':') {
            Some((cid, port)) => Ok(Self::Vsock {
                cid: number(cid)?,
                port: number(port)?,
            }),
            None => Ok(Self::Vsock {
                cid: VSOCK_HOST_CID,
                port: number(rest)?,
            }),
        }
    }
}

impl std::fmt::Display for QgsAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The QGS address configured in Intel's `tdx-attest.conf` format (`port=N`
/// lines, `#` comments), or `None` when the file is absent or names no port.
pub fn qgs_from_conf(path: &Path) -> anyhow::Result<Option<QgsAddress>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "port" && !line.starts_with('#') {
            let port = value.trim().parse::<u32>().with_context(|| {
                format!(
                    "{}: port {:?} is not a number",
                    path.display(),
                    value.trim()
                )
            })?;
            return Ok(Some(QgsAddress::Vsock {
                cid: VSOCK_HOST_CID,
                port,
            }));
        }
    }
    Ok(None)
}

fn open_device(device: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .with_context(|| format!("opening {}", device.display()))
}

/// Gets a TDREPORT binding `report_data` from the TDX guest driver.
pub fn td_report(device: &Path, report_data: &[u8; 64]) -> anyhow::Result<[u8; TD_REPORT_LEN]> {
    let file = open_device(device)?;
    let mut request = ReportReq {
        reportdata: *report_data,
        tdreport: [0; TD_REPORT_LEN],
    };
    // SAFETY: `request` is owned here, lives until the call returns, and has
    // the size `tdx_get_report0` encodes.
    unsafe { tdx_get_report0(file.as_raw_fd(), &mut request) }.with_context(|| {
        format!(
            "TDX_CMD_GET_REPORT0 on {} failed (is this a TDX guest with the tdx_guest driver?)",
            device.display()
        )
    })?;
    let bound = qgs::td_report_data(&request.tdreport)?;
    if bound != *report_data {
        bail!(
            "the TDREPORT from {} does not carry the REPORTDATA asked for",
            device.display()
        );
    }
    Ok(request.tdreport)
}

/// Extends RTMR3 through the legacy `TDX_CMD_EXTEND_RTMR` ioctl.
pub fn extend_rtmr3_ioctl(device: &Path, digest: &Measurement) -> anyhow::Result<()> {
    let file = open_device(device)?;
    let mut request = ExtendRtmrReq {
        data: *digest,
        index: 3,
    };
    // SAFETY: `request` is owned here, lives until the call returns, and has
    // the size `tdx_extend_rtmr` encodes.
    unsafe { tdx_extend_rtmr(file.as_raw_fd(), &mut request) }.with_context(|| {
        format!(
            "TDX_CMD_EXTEND_RTMR on {} failed (this kernel has no legacy RTMR ioctl)",
            device.display()
        )
    })?;
    Ok(())
}

/// Extends RTMR3 with `digest`: through the measurement sysfs
/// (`measurements/rtmr3:sha384`, Linux 6.16+) when the kernel has it, else
/// through the legacy ioctl. With neither, the enclave must not serve: its
/// configuration would be unmeasured.
pub fn extend_rtmr3(sysfs: &Path, device: &Path, digest: &Measurement) -> anyhow::Result<()> {
    let path = sysfs.join("measurements").join("rtmr3:sha384");
    if path.exists() {
        return OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(digest))
            .with_context(|| format!("extending RTMR3 through {}", path.display()));
    }
    extend_rtmr3_ioctl(device, digest).with_context(|| {
        format!(
            "cannot extend RTMR3: {} not found (needs Linux 6.16+ TDX guest measurement sysfs) and the legacy ioctl failed; refusing to serve with unmeasured configuration",
            path.display()
        )
    })
}

/// Connects to the QGS with timeouts set.
fn connect(address: &QgsAddress) -> anyhow::Result<File> {
    match address {
        QgsAddress::Unix(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)
                .with_context(|| format!("connecting to the QGS at {address}"))?;
            stream.set_read_timeout(Some(QGS_TIMEOUT))?;
            stream.set_write_timeout(Some(QGS_TIMEOUT))?;
            Ok(File::from(std::os::fd::OwnedFd::from(stream)))
        }
        QgsAddress::Vsock { cid, port } => {
            use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, VsockAddr};
            let fd = socket::socket(
                AddressFamily::Vsock,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .with_context(|| format!("creating a vsock socket for the QGS at {address}"))?;
            let timeout = nix::sys::time::TimeVal::new(QGS_TIMEOUT.as_secs() as _, 0);
            socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
            socket::setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
            socket::connect(fd.as_raw_fd(), &VsockAddr::new(*cid, *port))
                .with_context(|| format!("connecting to the QGS at {address}"))?;
            Ok(File::from(fd))
        }
    }
}

/// Has the QGS at `address` quote `td_report`, and checks that the quote
/// carries `report_data`.
pub fn quote(
    address: &QgsAddress,
    td_report: &[u8; TD_REPORT_LEN],
    report_data: &[u8; 64],
) -> anyhow::Result<Vec<u8>> {
    let mut stream = connect(address)?;
    stream
        .write_all(&qgs::get_quote_request(td_report))
        .with_context(|| format!("sending the TDREPORT to the QGS at {address}"))?;
    let mut prefix = [0u8; 4];
    stream
        .read_exact(&mut prefix)
        .with_context(|| format!("reading the QGS answer from {address}"))?;
    let mut message = vec![0u8; qgs::frame_len(prefix)?];
    stream
        .read_exact(&mut message)
        .with_context(|| format!("reading the QGS answer from {address}"))?;
    let quote = qgs::parse_get_quote_response(&message)
        .with_context(|| format!("the QGS at {address} answered"))?;
    let parsed = Quote::parse(&quote).with_context(|| {
        format!("the QGS at {address} returned something that is not a TDX quote")
    })?;
    if parsed.body.report_data != *report_data {
        bail!(
            "the QGS at {address} returned a quote for REPORTDATA {}, expected {}",
            hex::encode(parsed.body.report_data),
            hex::encode(report_data)
        );
    }
    Ok(quote)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_request_layouts_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<ReportReq>(), 64 + 1024);
        assert_eq!(std::mem::size_of::<ExtendRtmrReq>(), 49);
    }

    #[test]
    fn qgs_addresses_parse_and_print() {
        for (text, want) in [
            ("vsock:4050", QgsAddress::Vsock { cid: 2, port: 4050 }),
            ("vsock:3:4051", QgsAddress::Vsock { cid: 3, port: 4051 }),
            (
                "unix:/run/qgs.sock",
                QgsAddress::Unix("/run/qgs.sock".into()),
            ),
        ] {
            let parsed: QgsAddress = text.parse().unwrap();
            assert_eq!(parsed, want);
            assert_eq!(parsed.to_string().parse::<QgsAddress>().unwrap(), want);
        }
        for bad in ["", "vsock:", "vsock:x", "vsock:1:2:3", "tcp:1", "unix:"] {
            let err = bad.parse::<QgsAddress>().unwrap_err();
            assert!(err.contains("expected vsock:PORT"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_port_comes_from_tdx_attest_conf() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("tdx-attest.conf");
        assert_eq!(qgs_from_conf(&conf).unwrap(), None);
        std::fs::write(&conf, "# port=1\n\n port = 4050 \n").unwrap();
        assert_eq!(
            qgs_from_conf(&conf).unwrap(),
            Some(QgsAddress::Vsock { cid: 2, port: 4050 })
        );
        std::fs::write(&conf, "# nothing\n").unwrap();
        assert_eq!(qgs_from_conf(&conf).unwrap(), None);
        std::fs::write(&conf, "port=many\n").unwrap();
        let err = format!("{:#}", qgs_from_conf(&conf).unwrap_err());
        assert!(err.contains("port \"many\" is not a number"), "{err}");
    }

    #[test]
    fn a_regular_file_is_not_the_driver() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = format!("{:#}", td_report(file.path(), &[0; 64]).unwrap_err());
        assert!(err.contains("TDX_CMD_GET_REPORT0"), "{err}");
        let err = format!(
            "{:#}",
            extend_rtmr3_ioctl(file.path(), &[0; 48]).unwrap_err()
        );
        assert!(err.contains("TDX_CMD_EXTEND_RTMR"), "{err}");
    }

    #[test]
    fn an_unreachable_vsock_qgs_is_a_clear_error() {
        // No QGS listens on port 1 of the host (nor, here, any vsock at all).
        let address = QgsAddress::Vsock {
            cid: VSOCK_HOST_CID,
            port: 1,
        };
        let err = format!(
            "{:#}",
            quote(&address, &[0; TD_REPORT_LEN], &[0; 64]).unwrap_err()
        );
        assert!(err.contains("the QGS at vsock:2:1"), "{err}");
    }

    /// Runs only inside a TDX guest with the driver loaded.
    #[test]
    fn a_real_tdx_guest_returns_a_td_report_binding_the_data() {
        let device = Path::new(TDX_GUEST_DEVICE);
        if !device.exists() {
            eprintln!("skipped: {TDX_GUEST_DEVICE} not present (not a TDX guest)");
            return;
        }
        let report = td_report(device, &[0x5a; 64]).unwrap();
        assert_eq!(qgs::td_report_data(&report).unwrap(), [0x5a; 64]);
    }
}
