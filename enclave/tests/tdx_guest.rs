#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! TDX evidence on kernels without configfs-tsm: a TDREPORT quoted by the
//! host's Quote Generation Service. The QGS here is a fake one on a Unix
//! socket speaking Intel's QGS message protocol and quoting with the sim
//! platform; the TDREPORT ioctl itself needs a TDX guest (see the gated test
//! in `tdx_guest.rs`), so these tests hand the client a TDREPORT they built.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use kokon_attestation::sim::{SimRoot, SimTd, SimTdx};
use kokon_attestation::tdx::qgs::{self, TD_REPORT_DATA_OFFSET, TD_REPORT_LEN};
use kokon_attestation::{tdx, TrustAnchors};
use kokon_enclave::evidence::{Backend, HardwarePaths, TeeKind};
use kokon_enclave::tdx_guest::{self, QgsAddress};

const NOW: i64 = 1_780_000_000;

/// What the fake QGS answers (the whole frame) to a REPORTDATA.
type Answer = Box<dyn Fn([u8; 64]) -> Vec<u8> + Send>;

struct FakeQgs {
    address: QgsAddress,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FakeQgs {
    /// Serves `connections` requests, each with `answer`.
    fn start(connections: usize, answer: Answer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qgs.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            for _ in 0..connections {
                let (mut stream, _) = listener.accept().unwrap();
                let mut prefix = [0u8; 4];
                stream.read_exact(&mut prefix).unwrap();
                let mut message = vec![0u8; qgs::frame_len(prefix).unwrap()];
                stream.read_exact(&mut message).unwrap();
                let request = qgs::parse_get_quote_request(&message).unwrap();
                let data = qgs::td_report_data(&request.td_report).unwrap();
                let _ = stream.write_all(&answer(data));
            }
        });
        Self {
            address: QgsAddress::Unix(path),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for FakeQgs {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if !std::thread::panicking() {
                t.join().unwrap();
            }
        }
    }
}

fn sim() -> (SimRoot, SimTdx) {
    let root = SimRoot::generate(NOW).unwrap();
    let td = SimTd {
        mr_td: [7; 48],
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let tdx = SimTdx::new(&root, td, NOW).unwrap();
    (root, tdx)
}

/// A TDREPORT carrying `data` (the rest does not matter to the QGS client).
fn td_report(data: [u8; 64]) -> [u8; TD_REPORT_LEN] {
    let mut report = [0u8; TD_REPORT_LEN];
    report[TD_REPORT_DATA_OFFSET..TD_REPORT_DATA_OFFSET + 64].copy_from_slice(&data);
    report
}

fn quote_error(answer: Answer, data: [u8; 64]) -> String {
    let qgs = FakeQgs::start(1, answer);
    let err = tdx_guest::quote(&qgs.address, &td_report(data), &data).unwrap_err();
    format!("{err:#}")
}

#[test]
fn the_qgs_quotes_the_td_report_and_the_quote_verifies() {
    let (root, tdx) = sim();
    let qgs = FakeQgs::start(
        1,
        Box::new(move |data| qgs::get_quote_response(0, &tdx.quote(data).unwrap()).unwrap()),
    );
    let data = [0x5a; 64];
    let quote = tdx_guest::quote(&qgs.address, &td_report(data), &data).unwrap();
    let anchors = TrustAnchors {
        roots: vec![root.anchor()],
    };
    let verified = tdx::verify_quote(&quote, &anchors, NOW).unwrap();
    assert_eq!(verified.quote.body.report_data, data);
}

#[test]
fn a_qgs_error_code_is_reported() {
    let err = quote_error(
        Box::new(|_| qgs::get_quote_response(0x0001_2001, b"").unwrap()),
        [1; 64],
    );
    assert!(
        err.contains("QGS error code: expected 0 (success), found 0x00012001"),
        "{err}"
    );
}

#[test]
fn a_quote_for_other_report_data_is_refused() {
    let (_root, tdx) = sim();
    let err = quote_error(
        Box::new(move |_| qgs::get_quote_response(0, &tdx.quote([9; 64]).unwrap()).unwrap()),
        [1; 64],
    );
    assert!(
        err.contains(&format!(
            "returned a quote for REPORTDATA {}, expected {}",
            "09".repeat(64),
            "01".repeat(64)
        )),
        "{err}"
    );
}

#[test]
fn an_answer_that_is_not_a_quote_is_refused() {
    let err = quote_error(
        Box::new(|_| qgs::get_quote_response(0, b"not a quote").unwrap()),
        [1; 64],
    );
    assert!(err.contains("not a TDX quote"), "{err}");
}

#[test]
fn an_oversized_or_truncated_answer_is_refused() {
    let err = quote_error(Box::new(|_| u32::MAX.to_be_bytes().to_vec()), [1; 64]);
    assert!(err.contains("QGS message is larger than allowed"), "{err}");
    let err = quote_error(
        Box::new(|_| {
            let mut frame = qgs::get_quote_response(0, b"quote").unwrap();
            frame.truncate(frame.len() - 2);
            frame
        }),
        [1; 64],
    );
    assert!(err.contains("reading the QGS answer"), "{err}");
}

#[test]
fn an_absent_qgs_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let address = QgsAddress::Unix(dir.path().join("none.sock"));
    let err = format!(
        "{:#}",
        tdx_guest::quote(&address, &td_report([0; 64]), &[0; 64]).unwrap_err()
    );
    assert!(err.contains("connecting to the QGS at unix:"), "{err}");
}

/// A machine without configfs-tsm whose `tdx_guest` device exists.
fn device_only(qgs: Option<QgsAddress>) -> (tempfile::TempDir, HardwarePaths) {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("tdx_guest");
    fs::write(&device, b"").unwrap();
    let paths = HardwarePaths {
        tsm_root: dir.path().join("absent"),
        tdx_sysfs: dir.path().join("absent"),
        sev_guest: dir.path().join("absent"),
        tdx_guest: device,
        qgs,
    };
    (dir, paths)
}

fn start(kind: TeeKind, paths: &HardwarePaths) -> anyhow::Result<Backend> {
    let data = tempfile::tempdir().unwrap();
    let sim = kokon_attestation::sim::SimTd {
        mr_td: [0; 48],
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    Backend::start(kind, paths, data.path(), sim, NOW)
}

#[test]
fn without_configfs_tsm_tdx_uses_the_device_and_the_qgs() {
    let qgs = QgsAddress::Unix(PathBuf::from("/nonexistent/qgs.sock"));
    let (_dir, paths) = device_only(Some(qgs));
    for kind in [TeeKind::Tdx, TeeKind::Auto] {
        let mut backend = start(kind, &paths).unwrap();
        assert_eq!(backend.name(), "tdx", "{kind:?}");
        // A regular file is not the driver: the ioctls fail, and say so.
        let err = format!("{:#}", backend.evidence([0; 64]).unwrap_err());
        assert!(err.contains("TDX_CMD_GET_REPORT0"), "{err}");
        let err = format!(
            "{:#}",
            backend.extend_runtime_measurement(&[1; 48]).unwrap_err()
        );
        assert!(
            err.contains("TDX_CMD_EXTEND_RTMR") && err.contains("refusing to serve"),
            "{err}"
        );
    }
    let err = format!("{:#}", start(TeeKind::Snp, &paths).err().unwrap());
    assert!(err.contains("configfs-tsm not found"), "{err}");
}

#[test]
fn without_a_configured_qgs_the_tdx_device_is_refused_with_the_fix() {
    let (_dir, paths) = device_only(None);
    let err = format!("{:#}", start(TeeKind::Tdx, &paths).err().unwrap());
    assert!(
        err.contains("needs the host's Quote Generation Service: pass --qgs vsock:PORT or set port= in /etc/tdx-attest.conf"),
        "{err}"
    );
}
