#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Hardware evidence acquisition against a fake configfs-tsm and sysfs tree
//! built in a temporary directory, with a fake "kernel" thread that answers
//! report requests the way the TDX and SEV guest drivers do.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use kokon_attestation::roots::{amd_ark, amd_ask, AmdProduct};
use kokon_attestation::sim::{SimRoot, SimTd, SimTdx};
use kokon_attestation::snp::{cert_table, verify_report};
use kokon_attestation::{tdx, EvidenceFormat, TrustAnchors};
use kokon_enclave::evidence::{Backend, HardwarePaths, TeeKind};

const NOW: i64 = 1_780_000_000;

fn fixture(path: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(path),
    )
    .unwrap()
}

/// What the fake kernel puts in `outblob` and `auxblob` for a report data.
type Answer = Box<dyn Fn(&[u8]) -> (Vec<u8>, Option<Vec<u8>>) + Send>;

struct FakeKernel {
    paths: HardwarePaths,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FakeKernel {
    /// A tree whose provider is `provider`; `generation_after` is what the
    /// generation attribute reads after one write (1 for a well-behaved kernel).
    fn start(provider: &'static str, generation_after: u64, answer: Answer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tsm_root = dir.path().join("config/tsm/report");
        let tdx_sysfs = dir.path().join("class/misc/tdx_guest");
        fs::create_dir_all(&tsm_root).unwrap();
        fs::create_dir_all(tdx_sysfs.join("measurements")).unwrap();
        fs::write(tdx_sysfs.join("measurements/rtmr3:sha384"), [0u8; 48]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (root, stop) = (tsm_root.clone(), stop.clone());
            std::thread::spawn(move || {
                // Each directory is answered once, as the kernel does: a
                // directory being removed is never written to again.
                let mut introduced = std::collections::HashSet::new();
                let mut answered = std::collections::HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
                        let d = entry.path();
                        if introduced.insert(d.clone()) {
                            let _ = fs::write(d.join("provider"), format!("{provider}\n"));
                        }
                        // Answer once the 64 bytes are there (a write in
                        // progress may show an empty file).
                        let data = fs::read(d.join("inblob")).unwrap_or_default();
                        if data.len() == 64 && answered.insert(d.clone()) {
                            let (out, aux) = answer(&data);
                            let _ = fs::write(d.join("outblob"), out);
                            if let Some(aux) = aux {
                                let _ = fs::write(d.join("auxblob"), aux);
                            }
                            let _ =
                                fs::write(d.join("generation"), format!("{generation_after}\n"));
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        Self {
            paths: HardwarePaths {
                tsm_root,
                tdx_sysfs,
                sev_guest: dir.path().join("dev/sev-guest"),
                tdx_guest: dir.path().join("dev/tdx_guest"),
                qgs: None,
            },
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn leftover_entries(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.paths.tsm_root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for FakeKernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
fn tdx_evidence_comes_from_configfs_tsm_and_binds_the_report_data() {
    let root = SimRoot::generate(NOW).unwrap();
    let td = SimTd {
        mr_td: [7; 48],
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let sim = SimTdx::new(&root, td, NOW).unwrap();
    let kernel = FakeKernel::start(
        "tdx_guest",
        1,
        Box::new(move |data| {
            let mut rd = [0u8; 64];
            rd.copy_from_slice(data);
            (sim.quote(rd).unwrap(), None)
        }),
    );
    for kind in [TeeKind::Tdx, TeeKind::Auto] {
        let mut backend = start(kind, &kernel.paths).unwrap();
        assert_eq!(backend.name(), "tdx", "{kind:?}");
        backend.extend_runtime_measurement(&[9; 48]).unwrap();
        assert_eq!(
            fs::read(kernel.paths.tdx_sysfs.join("measurements/rtmr3:sha384")).unwrap(),
            vec![9; 48]
        );
        let evidence = backend.evidence([0x5a; 64]).unwrap();
        assert_eq!(evidence.format, EvidenceFormat::TdxQuote);
        let anchors = TrustAnchors {
            roots: vec![root.anchor()],
        };
        let v = tdx::verify_quote(&evidence.data, &anchors, NOW).unwrap();
        assert_eq!(v.quote.body.report_data, [0x5a; 64]);
    }
    assert!(
        kernel.leftover_entries().is_empty(),
        "report entries are removed"
    );
}

#[test]
fn snp_evidence_carries_the_hosts_certificate_table() {
    let vcek = fixture("snp/trustee_vcek.der");
    let ask = amd_ask(AmdProduct::Milan).unwrap();
    let ark = amd_ark(AmdProduct::Milan).unwrap();
    let table = cert_table::build(&[
        (cert_table::VCEK_GUID, &vcek),
        (cert_table::ASK_GUID, &ask),
        (cert_table::ARK_GUID, &ark.der),
    ])
    .unwrap();
    let report = fixture("snp/trustee_report.bin");
    let kernel = FakeKernel::start(
        "sev_guest",
        1,
        Box::new(move |_| (report.clone(), Some(table.clone()))),
    );
    let mut backend = start(TeeKind::Snp, &kernel.paths).unwrap();
    assert_eq!(backend.name(), "snp");
    // SNP has no runtime register: extending is a no-op, not an error.
    backend.extend_runtime_measurement(&[1; 48]).unwrap();
    let evidence = backend.evidence([0; 64]).unwrap();
    assert_eq!(evidence.format, EvidenceFormat::SnpReport);
    assert_eq!(
        evidence.certificates,
        vec![vcek.clone(), ask, ark.der.clone()]
    );
    let anchors = TrustAnchors { roots: vec![ark] };
    let v = verify_report(
        &evidence.data,
        &evidence.certificates[0],
        &evidence.certificates[1..],
        &anchors,
        1_735_689_600, // 2025-01-01
    )
    .unwrap();
    assert_eq!(v.report.version, 2);
    assert!(kernel.leftover_entries().is_empty());
}

#[test]
fn the_wrong_provider_is_refused_not_substituted() {
    let kernel = FakeKernel::start("sev_guest", 1, Box::new(|_| (vec![1], None)));
    let err = start(TeeKind::Tdx, &kernel.paths)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("provider is \"sev_guest\", expected \"tdx_guest\""),
        "{err}"
    );
}

#[test]
fn a_concurrent_writer_is_detected() {
    let kernel = FakeKernel::start("tdx_guest", 2, Box::new(|_| (vec![1; 100], None)));
    let backend = start(TeeKind::Tdx, &kernel.paths).unwrap();
    let err = backend.evidence([0; 64]).unwrap_err().to_string();
    assert!(err.contains("another writer raced us"), "{err}");
}

#[test]
fn without_configfs_tsm_there_is_no_silent_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let paths = HardwarePaths {
        tsm_root: dir.path().join("absent"),
        tdx_sysfs: dir.path().join("absent"),
        sev_guest: dir.path().join("absent"),
        tdx_guest: dir.path().join("absent"),
        qgs: None,
    };
    for kind in [TeeKind::Tdx, TeeKind::Snp, TeeKind::Auto] {
        let err = format!("{:#}", start(kind, &paths).err().unwrap());
        assert!(err.contains("configfs-tsm not found"), "{kind:?}: {err}");
    }
    let err = format!("{:#}", start(TeeKind::Auto, &paths).err().unwrap());
    assert!(err.contains("no silent fallback"), "{err}");
}

#[test]
fn a_tdx_guest_without_rtmr_sysfs_refuses_to_serve() {
    let kernel = FakeKernel::start("tdx_guest", 1, Box::new(|_| (vec![1], None)));
    fs::remove_file(kernel.paths.tdx_sysfs.join("measurements/rtmr3:sha384")).unwrap();
    let mut backend = start(TeeKind::Tdx, &kernel.paths).unwrap();
    let err = backend
        .extend_runtime_measurement(&[1; 48])
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to serve"), "{err}");
}

#[test]
fn without_configfs_tsm_snp_uses_the_sev_guest_device_and_tdx_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("sev-guest");
    fs::write(&device, b"").unwrap();
    let paths = HardwarePaths {
        tsm_root: dir.path().join("absent"),
        tdx_sysfs: dir.path().join("absent"),
        sev_guest: device,
        tdx_guest: dir.path().join("absent"),
        qgs: None,
    };
    for kind in [TeeKind::Snp, TeeKind::Auto] {
        let backend = start(kind, &paths).unwrap();
        assert_eq!(backend.name(), "snp", "{kind:?}");
        // A regular file is not the driver: the ioctl fails, and says so.
        let err = backend.evidence([0; 64]).unwrap_err().to_string();
        assert!(err.contains("SNP_GET_EXT_REPORT"), "{err}");
    }
    let err = format!("{:#}", start(TeeKind::Tdx, &paths).err().unwrap());
    assert!(err.contains("configfs-tsm not found"), "{err}");
}
