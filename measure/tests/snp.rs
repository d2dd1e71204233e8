//! The SEV-SNP launch digest: equal to sev-snp-measure 0.0.13's on a real
//! OVMF (Debian's) and on OVMF-shaped images with an SEV hashes table, and
//! every check of the OVMF parser and of the inputs tripped with its message.
//!
//! The firmware is `KOKON_OVMF` (default below); sev-snp-measure is
//! `KOKON_SEV_SNP_MEASURE` or the one `scripts/setup.sh` installs into
//! `.cache/venv`. Both missing is a failure, not a skip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use kokon_measure::snp::{self, SnpError, SnpInputs, VcpuType};
use uuid::{uuid, Uuid};

/// Where the firmware is found when `KOKON_OVMF` is unset: the guest image
/// `just test` builds before the tests (`kokon image build`).
const DEFAULT_OVMF: &str = "../.cache/vm/image/OVMF.fd";

/// The OVMF image the tests measure.
fn ovmf_path() -> PathBuf {
    let path = std::env::var_os("KOKON_OVMF").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_OVMF),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no OVMF image at {}: run `just image` (or `just test`), or set KOKON_OVMF to an OVMF.fd with SEV support",
        path.display()
    );
    path
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// sev-snp-measure's command line tool.
fn sev_snp_measure() -> PathBuf {
    let path = std::env::var_os("KOKON_SEV_SNP_MEASURE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/sev-snp-measure"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no sev-snp-measure at {}: run scripts/setup.sh test, or set KOKON_SEV_SNP_MEASURE",
        path.display()
    );
    path
}

/// Deterministic bytes standing in for a kernel or an initrd.
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    // xorshift64 from a distinct non-zero state per seed.
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

const CMDLINE: &str = "console=ttyS0 earlyprintk=serial panic=-1 ro quiet \
                       root=/dev/vda verity.roothash=5b2e0c1d kokon.model=magika";

const FOOTER_GUID: Uuid = uuid!("96b582de-1fb2-45f7-baea-a366c55a082d");
const SEV_METADATA_GUID: Uuid = uuid!("dc886566-984a-4798-a75e-5585a7bf67cc");
const SEV_ES_RESET_BLOCK_GUID: Uuid = uuid!("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
const SEV_HASH_TABLE_GUID: Uuid = uuid!("7255371f-3a3b-4b04-927b-1da6efa8d454");

const SEC_MEM: u32 = 1;
const SECRETS: u32 = 2;
const CPUID: u32 = 3;
const SVSM_CAA: u32 = 4;
const KERNEL_HASHES: u32 = 0x10;

/// An OVMF-shaped image built from parts: seeded bytes, the SEV metadata
/// 4 KiB before the end, and the footer table whose entries point at it.
/// Laid out as edk2 lays out an AmdSevX64 build's.
#[derive(Clone)]
struct Image {
    len: usize,
    /// Footer table entries, first to last (the footer entry follows).
    entries: Vec<(Uuid, Vec<u8>)>,
    /// SEV metadata header fields and sections (GPA, size, type).
    signature: [u8; 4],
    version: u32,
    sections: Vec<(u32, u32, u32)>,
}

/// Where `Image` puts the SEV metadata: this many bytes before the end.
const METADATA_FROM_END: u32 = 0x1000;

impl Image {
    /// An image like an AmdSevX64 OVMF's tail: an SEV-ES reset block, SEV
    /// metadata with an SNP_KERNEL_HASHES page, and the hashes table area
    /// inside it (at an offset in the page, as QEMU handles).
    fn amd_sev() -> Self {
        Image {
            len: 64 * 1024,
            entries: vec![
                (SEV_HASH_TABLE_GUID, le_pair(0x0080_fc00, 0x400)),
                (SEV_METADATA_GUID, METADATA_FROM_END.to_le_bytes().to_vec()),
                (
                    SEV_ES_RESET_BLOCK_GUID,
                    0x0080_b004u32.to_le_bytes().to_vec(),
                ),
            ],
            signature: *b"ASEV",
            version: 1,
            sections: vec![
                (0x0080_0000, 0x9000, SEC_MEM),
                (0x0080_a000, 0x3000, SEC_MEM),
                (0x0080_d000, 0x1000, SECRETS),
                (0x0080_e000, 0x1000, CPUID),
                (0x0080_f000, 0x1000, KERNEL_HASHES),
                (0x0081_0000, 0x1000, SVSM_CAA),
                (0x0081_1000, 0x10000, SEC_MEM),
            ],
        }
    }

    fn without_entry(mut self, guid: Uuid) -> Self {
        self.entries.retain(|(g, _)| *g != guid);
        self
    }

    fn with_entry(mut self, guid: Uuid, data: Vec<u8>) -> Self {
        self = self.without_entry(guid);
        self.entries.push((guid, data));
        self
    }

    fn with_section(mut self, index: usize, section: (u32, u32, u32)) -> Self {
        self.sections[index] = section;
        self
    }

    /// The footer table's bytes, footer entry included.
    fn table(&self) -> Vec<u8> {
        let mut table = Vec::new();
        for (guid, data) in &self.entries {
            table.extend_from_slice(data);
            table.extend_from_slice(&(data.len() as u16 + 18).to_le_bytes());
            table.extend_from_slice(&guid.to_bytes_le());
        }
        table.extend_from_slice(&(table.len() as u16 + 18).to_le_bytes());
        table.extend_from_slice(&FOOTER_GUID.to_bytes_le());
        table
    }

    fn metadata(&self) -> Vec<u8> {
        let mut out = self.signature.to_vec();
        out.extend_from_slice(&(16 + 12 * self.sections.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (gpa, size, kind) in &self.sections {
            for field in [gpa, size, kind] {
                out.extend_from_slice(&field.to_le_bytes());
            }
        }
        out
    }

    fn build(&self) -> Vec<u8> {
        let mut out = seeded_bytes(self.len as u64, self.len);
        let metadata = self.metadata();
        let at = self.len - METADATA_FROM_END as usize;
        out[at..at + metadata.len()].copy_from_slice(&metadata);
        let table = self.table();
        let end = self.len - 32;
        out[end - table.len()..end].copy_from_slice(&table);
        out
    }
}

fn le_pair(a: u32, b: u32) -> Vec<u8> {
    [a.to_le_bytes(), b.to_le_bytes()].concat()
}

/// One launch: inputs for both implementations.
#[derive(Clone)]
struct Launch {
    ovmf: PathBuf,
    kernel: Option<Vec<u8>>,
    initrd: Option<Vec<u8>>,
    cmdline: Option<&'static str>,
    vcpus: u32,
    vcpu_type: VcpuType,
    guest_features: u64,
}

impl Launch {
    fn firmware_only(ovmf: PathBuf, vcpus: u32, vcpu_type: VcpuType) -> Self {
        Launch {
            ovmf,
            kernel: None,
            initrd: None,
            cmdline: None,
            vcpus,
            vcpu_type,
            guest_features: 0x1,
        }
    }

    fn direct_boot(ovmf: PathBuf, vcpus: u32, vcpu_type: VcpuType) -> Self {
        Launch {
            kernel: Some(seeded_bytes(1, 300_000)),
            initrd: Some(seeded_bytes(2, 500_000)),
            cmdline: Some(CMDLINE),
            ..Launch::firmware_only(ovmf, vcpus, vcpu_type)
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} kernel={} initrd={} cmdline={:?} vcpus={} type={} features={:#x}",
            self.ovmf.display(),
            self.kernel.is_some(),
            self.initrd.is_some(),
            self.cmdline,
            self.vcpus,
            self.vcpu_type,
            self.guest_features
        )
    }

    /// kokon's digest.
    fn ours(&self) -> Result<[u8; 48], SnpError> {
        let ovmf = read(&self.ovmf);
        snp::launch_digest(&SnpInputs {
            ovmf: &ovmf,
            kernel: self.kernel.as_deref(),
            initrd: self.initrd.as_deref(),
            cmdline: self.cmdline,
            vcpus: self.vcpus,
            vcpu_type: self.vcpu_type,
            guest_features: self.guest_features,
        })
    }

    /// sev-snp-measure's hex digest, or its error output.
    fn theirs(&self) -> Result<String, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut command = Command::new(sev_snp_measure());
        command
            .args(["--mode", "snp", "--output-format", "hex"])
            .arg(format!("--vcpus={}", self.vcpus))
            .arg(format!("--vcpu-type={}", self.vcpu_type))
            .arg(format!("--guest-features={:#x}", self.guest_features))
            .arg("--ovmf")
            .arg(&self.ovmf);
        for (flag, blob) in [("--kernel", &self.kernel), ("--initrd", &self.initrd)] {
            if let Some(blob) = blob {
                let path = dir.path().join(&flag[2..]);
                std::fs::write(&path, blob).expect("writing a blob");
                command.arg(flag).arg(path);
            }
        }
        if let Some(cmdline) = self.cmdline {
            command.arg(format!("--append={cmdline}"));
        }
        let output = command.output().expect("running sev-snp-measure");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

/// Runs every launch through both implementations (in parallel: the tool
/// is a Python process per launch) and requires equal digests.
fn assert_same_digests(launches: Vec<Launch>) {
    let handles: Vec<_> = launches
        .into_iter()
        .map(|launch| thread::spawn(move || (launch.describe(), launch.ours(), launch.theirs())))
        .collect();
    for handle in handles {
        let (what, ours, theirs) = handle.join().expect("a launch panicked");
        let ours = ours.unwrap_or_else(|e| panic!("{what}: kokon refused: {e}"));
        let theirs = theirs.unwrap_or_else(|e| panic!("{what}: sev-snp-measure refused: {e}"));
        assert_eq!(hex::encode(ours), theirs, "{what}");
    }
}

const VCPU_COUNTS: [u32; 4] = [1, 2, 4, 16];
const VCPU_TYPES: [VcpuType; 3] = [VcpuType::EpycV4, VcpuType::EpycMilan, VcpuType::EpycGenoa];

fn grid(make: impl Fn(u32, VcpuType) -> Launch) -> Vec<Launch> {
    VCPU_COUNTS
        .into_iter()
        .flat_map(|vcpus| VCPU_TYPES.map(|t| make(vcpus, t)))
        .collect()
}

/// Writes an image to a file that lives as long as the returned guard.
fn image_file(image: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("OVMF.fd");
    std::fs::write(&path, image).expect("writing the image");
    (dir, path)
}

#[test]
fn real_ovmf_without_kernel_hashes_equals_sev_snp_measure() {
    let ovmf = ovmf_path();
    let mut launches = grid(|vcpus, t| Launch::firmware_only(ovmf.clone(), vcpus, t));
    // Every other vCPU type once, and SEV features with DebugSwap (bit 5).
    launches.extend(VcpuType::ALL.map(|t| Launch::firmware_only(ovmf.clone(), 2, t)));
    launches.push(Launch {
        guest_features: 0x21,
        ..Launch::firmware_only(ovmf.clone(), 4, VcpuType::EpycGenoa)
    });
    assert_same_digests(launches);
}

#[test]
fn kernel_hashes_equal_sev_snp_measure() {
    let (_dir, ovmf) = image_file(&Image::amd_sev().build());
    let mut launches = grid(|vcpus, t| Launch::direct_boot(ovmf.clone(), vcpus, t));
    let boot = Launch::direct_boot(ovmf.clone(), 2, VcpuType::EpycMilan);
    launches.extend([
        Launch {
            initrd: None,
            ..boot.clone()
        },
        Launch {
            cmdline: None,
            ..boot.clone()
        },
        Launch {
            initrd: None,
            cmdline: Some(""),
            ..boot.clone()
        },
        Launch {
            kernel: Some(Vec::new()),
            ..boot.clone()
        },
        Launch {
            guest_features: 0x21,
            ..boot.clone()
        },
        // The hashes page is a ZERO page without a kernel.
        Launch::firmware_only(ovmf.clone(), 2, VcpuType::EpycMilan),
    ]);
    assert_same_digests(launches);
}

#[test]
fn a_changed_blob_changes_the_digest() {
    let (_dir, ovmf) = image_file(&Image::amd_sev().build());
    let boot = Launch::direct_boot(ovmf, 2, VcpuType::EpycMilan);
    let base = boot.ours().expect("digest");
    let mut kernel = boot.kernel.clone().expect("kernel");
    kernel[1000] ^= 1;
    let changed = [
        Launch {
            kernel: Some(kernel),
            ..boot.clone()
        },
        Launch {
            cmdline: Some("console=ttyS0"),
            ..boot.clone()
        },
        Launch {
            initrd: Some(seeded_bytes(3, 500_000)),
            ..boot.clone()
        },
        Launch {
            vcpus: 3,
            ..boot.clone()
        },
        Launch {
            vcpu_type: VcpuType::EpycGenoa,
            ..boot.clone()
        },
        Launch {
            guest_features: 0x21,
            ..boot.clone()
        },
    ];
    for launch in changed {
        assert_ne!(
            launch.ours().expect("digest"),
            base,
            "{}",
            launch.describe()
        );
    }
}

#[test]
fn real_ovmf_with_a_kernel_is_refused_by_both() {
    // Debian's OVMF has the hashes table GUID with a zero area and no
    // SNP_KERNEL_HASHES section: QEMU's kernel-hashes=on cannot use it.
    let launch = Launch::direct_boot(ovmf_path(), 1, VcpuType::EpycMilan);
    let ours = launch.ours().expect_err("kokon must refuse").to_string();
    assert!(
        ours.starts_with("kernel given but this OVMF has no SEV hashes table (its SEV hashes table area is GPA 0x0, 0 bytes"),
        "{ours}"
    );
    assert!(ours.contains("AmdSevX64"), "{ours}");
    let theirs = launch.theirs().expect_err("sev-snp-measure must refuse");
    assert!(theirs.contains("SNP_KERNEL_HASHES"), "{theirs}");
}

#[test]
fn the_explanation_says_what_was_measured() {
    let image = Image::amd_sev().build();
    let kernel = seeded_bytes(1, 300_000);
    let inputs = SnpInputs {
        ovmf: &image,
        kernel: Some(&kernel),
        initrd: None,
        cmdline: Some("console=ttyS0"),
        vcpus: 4,
        vcpu_type: VcpuType::EpycMilan,
        guest_features: 1,
    };
    let registers = snp::expected(&inputs).expect("expected");
    assert_eq!(registers.len(), 1);
    let register = &registers[0];
    assert_eq!(register.name, "snp_measurement");
    assert_eq!(register.value, snp::launch_digest(&inputs).expect("digest"));
    let text = register.explanation.join("\n");
    let kernel_sha256 = "kernel: 300000 bytes, SHA-256 ";
    for needle in [
        "OVMF: 65536 bytes, SHA-384 ",
        "mapped at GPA 0xffff0000 to 4 GiB: 16 NORMAL pages",
        "SEV metadata section 0: SNP_SEC_MEM at GPA 0x800000, 0x9000 bytes: 9 ZERO pages",
        "SEV metadata section 2: SNP_SECRETS at GPA 0x80d000, 0x1000 bytes: 1 SECRETS page",
        "SEV metadata section 3: CPUID at GPA 0x80e000, 0x1000 bytes: 1 CPUID page",
        "SEV metadata section 4: SNP_KERNEL_HASHES at GPA 0x80f000, 0x1000 bytes: 1 NORMAL page holding the SEV hashes table",
        "SEV metadata section 5: SVSM_CAA at GPA 0x810000, 0x1000 bytes: 1 ZERO page",
        "SEV hashes table at GPA 0x80fc00, offset 0xc00 of its page (176 bytes",
        kernel_sha256,
        // SHA-256 of nothing: no initrd.
        "initrd: 0 bytes, SHA-256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "command line: \"console=ttyS0\" and its NUL",
        "4 VMSA pages: vCPU type EPYC-Milan (CPUID signature 0x00a00f11 in RDX), SEV features (guest features) 0x1",
        "BSP at 0xfffffff0",
        "3 APs at the SEV-ES reset block's 0x80b004",
        &format!("launch digest (MEASUREMENT): {}", hex::encode(&register.value)),
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let snippet = kokon_measure::policy_snippet(&registers);
    assert_eq!(
        snippet,
        format!(
            "[measurements]\nsnp_measurement = [\"{}\"]\n",
            hex::encode(&register.value)
        )
    );
}

// ---- Negative tests: every check trips, with its message. ----

fn inputs(ovmf: &[u8]) -> SnpInputs<'_> {
    SnpInputs {
        ovmf,
        kernel: None,
        initrd: None,
        cmdline: None,
        vcpus: 2,
        vcpu_type: VcpuType::EpycMilan,
        guest_features: 1,
    }
}

/// The error measuring `image` (firmware only) gives.
fn error_of(image: &[u8]) -> String {
    match snp::launch_digest(&inputs(image)) {
        Ok(digest) => panic!("accepted, digest {}", hex::encode(digest)),
        Err(e) => e.to_string(),
    }
}

/// The error measuring `image` with a kernel gives.
fn kernel_error_of(image: &[u8]) -> String {
    let kernel = [1u8; 100];
    let result = snp::launch_digest(&SnpInputs {
        kernel: Some(&kernel),
        ..inputs(image)
    });
    match result {
        Ok(digest) => panic!("accepted, digest {}", hex::encode(digest)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_synthetic_image_is_accepted() {
    // The baseline every negative test below changes one thing of.
    let image = Image::amd_sev().build();
    snp::launch_digest(&inputs(&image)).expect("firmware only");
    let kernel = [1u8; 100];
    snp::launch_digest(&SnpInputs {
        kernel: Some(&kernel),
        ..inputs(&image)
    })
    .expect("with a kernel");
}

#[test]
fn truncated_or_misaligned_images_are_refused() {
    let image = Image::amd_sev().build();
    assert_eq!(
        error_of(&image[..100]),
        "OVMF image: 100 bytes; expected a non-empty whole number of 4096-byte pages, at most 4 GiB"
    );
    assert_eq!(
        error_of(&[]),
        "OVMF image: 0 bytes; expected a non-empty whole number of 4096-byte pages, at most 4 GiB"
    );
    assert!(error_of(&image[1..]).starts_with("OVMF image: 65535 bytes;"));
    // Cut at a page boundary: the footer table is gone.
    let cut = error_of(&image[..image.len() - 4096]);
    assert!(
        cut.starts_with("OVMF footer table: expected GUID 96b582de-1fb2-45f7-baea-a366c55a082d in the 18-byte footer entry at offset 0xefce (ending 32 bytes before the image's end), found "),
        "{cut}"
    );
}

#[test]
fn a_missing_footer_guid_is_refused() {
    let mut image = Image::amd_sev().build();
    let end = image.len() - 32;
    image[end - 16..end].fill(0);
    assert_eq!(
        error_of(&image),
        "OVMF footer table: expected GUID 96b582de-1fb2-45f7-baea-a366c55a082d in the 18-byte \
         footer entry at offset 0xffce (ending 32 bytes before the image's end), found \
         00000000-0000-0000-0000-000000000000 (not an OVMF image with a GUIDed footer table)"
    );
}

/// Overwrites the footer entry's length.
fn with_footer_length(mut image: Vec<u8>, length: u16) -> Vec<u8> {
    let at = image.len() - 32 - 18;
    image[at..at + 2].copy_from_slice(&length.to_le_bytes());
    image
}

#[test]
fn a_footer_table_length_out_of_range_is_refused() {
    let image = Image::amd_sev().build();
    assert_eq!(
        error_of(&with_footer_length(image.clone(), 4065)[60 * 1024..]),
        "OVMF footer table: length 4065 out of range: at least 18 (the footer entry) and at \
         most the 4064 bytes of the image up to the footer's end"
    );
    assert_eq!(
        error_of(&with_footer_length(image.clone(), 17)),
        "OVMF footer table: length 17 out of range: at least 18 (the footer entry) and at most \
         the 65504 bytes of the image up to the footer's end"
    );
    // Five more bytes than the entries: too few for another entry header.
    let table_len = Image::amd_sev().table().len() as u16;
    assert_eq!(
        error_of(&with_footer_length(image, table_len + 5)),
        "OVMF footer table: 5 bytes left at the table's start, fewer than an 18-byte entry header"
    );
}

#[test]
fn an_entry_length_past_the_table_is_refused() {
    // The first entry (the hashes table area) claims more than the table.
    let image = Image::amd_sev();
    let table_len = image.table().len();
    let mut bytes = image.build();
    let at = bytes.len() - 32 - table_len + 8;
    bytes[at..at + 2].copy_from_slice(&500u16.to_le_bytes());
    assert_eq!(
        error_of(&bytes),
        "OVMF footer table: entry 7255371f-3a3b-4b04-927b-1da6efa8d454 has length 500, but only \
         26 bytes of the table are left"
    );
    bytes[at..at + 2].copy_from_slice(&3u16.to_le_bytes());
    assert_eq!(
        error_of(&bytes),
        "OVMF footer table: entry 7255371f-3a3b-4b04-927b-1da6efa8d454 has length 3, less than \
         its 18-byte header"
    );
}

#[test]
fn a_duplicate_entry_is_refused() {
    let mut image = Image::amd_sev();
    image
        .entries
        .insert(0, (SEV_ES_RESET_BLOCK_GUID, vec![0; 4]));
    assert_eq!(
        error_of(&image.build()),
        "OVMF footer table: entry 00f771de-1a7e-4fcb-890e-68c77e2fb44e appears twice; each GUID \
         may appear once"
    );
}

#[test]
fn missing_or_short_entries_are_refused() {
    let image = Image::amd_sev().without_entry(SEV_METADATA_GUID).build();
    assert_eq!(
        error_of(&image),
        "OVMF footer table has no SEV metadata entry (GUID dc886566-984a-4798-a75e-5585a7bf67cc): \
         not an OVMF built with SEV support"
    );
    let image = Image::amd_sev()
        .without_entry(SEV_ES_RESET_BLOCK_GUID)
        .build();
    assert_eq!(
        error_of(&image),
        "OVMF footer table has no SEV-ES reset block entry (GUID \
         00f771de-1a7e-4fcb-890e-68c77e2fb44e): not an OVMF built with SEV support"
    );
    for (guid, data, expected) in [
        (
            SEV_METADATA_GUID,
            vec![0; 2],
            "OVMF footer table: the SEV metadata entry holds 2 bytes, expected at least 4",
        ),
        (
            SEV_ES_RESET_BLOCK_GUID,
            vec![],
            "OVMF footer table: the SEV-ES reset block entry holds 0 bytes, expected at least 4",
        ),
        (
            SEV_HASH_TABLE_GUID,
            vec![0; 6],
            "OVMF footer table: the SEV hashes table entry holds 6 bytes, expected at least 8",
        ),
    ] {
        let image = Image::amd_sev().with_entry(guid, data).build();
        assert_eq!(error_of(&image), expected);
    }
}

#[test]
fn bad_sev_metadata_is_refused() {
    let offset = |at: u32| {
        Image::amd_sev()
            .with_entry(SEV_METADATA_GUID, at.to_le_bytes().to_vec())
            .build()
    };
    assert_eq!(
        error_of(&offset(0x20000)),
        "SEV metadata: offset 131072 from the image's end lies outside its 65536 bytes"
    );
    assert_eq!(
        error_of(&offset(8)),
        "OVMF image: truncated SEV metadata header: needed 4 bytes at offset 8, 0 available"
    );
    let image = Image {
        signature: *b"XSEV",
        ..Image::amd_sev()
    };
    assert_eq!(
        error_of(&image.build()),
        "SEV metadata: expected signature \"ASEV\", found \"XSEV\""
    );
    let image = Image {
        version: 2,
        ..Image::amd_sev()
    };
    assert_eq!(
        error_of(&image.build()),
        "SEV metadata: expected version 1, found 2"
    );
    // A size that cannot hold the sections the header counts.
    let mut bytes = Image::amd_sev().build();
    let at = bytes.len() - METADATA_FROM_END as usize + 4;
    bytes[at..at + 4].copy_from_slice(&40u32.to_le_bytes());
    assert_eq!(
        error_of(&bytes),
        "SEV metadata: size 40 cannot hold its header and 7 sections (100 bytes)"
    );
    // More sections than the image holds.
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[at + 8..at + 12].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(
        error_of(&bytes),
        "OVMF image: truncated SEV metadata sections: needed 12000 bytes at offset 16, 4080 \
         available"
    );
}

#[test]
fn bad_sections_are_refused() {
    let with = |section| error_of(&Image::amd_sev().with_section(1, section).build());
    assert_eq!(
        with((0x0080_a000, 0x3000, 7)),
        "SEV metadata section 1: unknown type 0x7 (expected 1 SNP_SEC_MEM, 2 SNP_SECRETS, \
         3 CPUID, 4 SVSM_CAA or 0x10 SNP_KERNEL_HASHES)"
    );
    assert_eq!(
        with((0x0080_a800, 0x3000, SEC_MEM)),
        "SEV metadata section 1 (SNP_SEC_MEM at GPA 0x80a800, 0x3000 bytes): GPA and size must \
         be page-aligned (multiples of 4096) and the size non-zero"
    );
    assert_eq!(
        with((0x0080_a000, 0x3001, SEC_MEM)),
        "SEV metadata section 1 (SNP_SEC_MEM at GPA 0x80a000, 0x3001 bytes): GPA and size must \
         be page-aligned (multiples of 4096) and the size non-zero"
    );
    assert_eq!(
        with((0x0080_a000, 0, SVSM_CAA)),
        "SEV metadata section 1 (SVSM_CAA at GPA 0x80a000, 0x0 bytes): GPA and size must be \
         page-aligned (multiples of 4096) and the size non-zero"
    );
    assert_eq!(
        with((0xffff_f000, 0x2000, SEC_MEM)),
        "SEV metadata section 1 (SNP_SEC_MEM at GPA 0xfffff000, 0x2000 bytes): ends above 4 GiB"
    );
    assert_eq!(
        with((0x0080_a000, 0x2000, SECRETS)),
        "SEV metadata section 1 (SNP_SECRETS at GPA 0x80a000, 0x2000 bytes): expected exactly \
         one 4096-byte page"
    );
    assert_eq!(
        with((0x0080_a000, 0x2000, CPUID)),
        "SEV metadata section 1 (CPUID at GPA 0x80a000, 0x2000 bytes): expected exactly one \
         4096-byte page"
    );
}

#[test]
fn a_kernel_without_a_hashes_table_is_refused() {
    let no_entry = Image::amd_sev().without_entry(SEV_HASH_TABLE_GUID).build();
    // Without a kernel the table is not needed.
    snp::launch_digest(&inputs(&no_entry)).expect("firmware only");
    assert_eq!(
        kernel_error_of(&no_entry),
        "kernel given but this OVMF has no SEV hashes table (its footer table has no SEV hashes \
         table entry): QEMU's kernel-hashes=on needs OVMF built from \
         OvmfPkg/AmdSev/AmdSevX64.dsc (Debian's ovmf-amdsev package, OVMF.amdsev.fd; its generic \
         OVMF.fd and OVMF_CODE*.fd reserve none)"
    );
    let area = |gpa, size| {
        Image::amd_sev()
            .with_entry(SEV_HASH_TABLE_GUID, le_pair(gpa, size))
            .build()
    };
    assert!(kernel_error_of(&area(0, 0)).starts_with(
        "kernel given but this OVMF has no SEV hashes table (its SEV hashes table area is GPA \
         0x0, 0 bytes; QEMU needs a non-zero GPA and at least 176 bytes)"
    ));
    assert!(kernel_error_of(&area(0x0080_fc00, 175))
        .contains("(its SEV hashes table area is GPA 0x80fc00, 175 bytes;"));
    let no_section = Image::amd_sev()
        .with_section(4, (0x0080_f000, 0x1000, SEC_MEM))
        .build();
    assert!(kernel_error_of(&no_section).starts_with(
        "kernel given but this OVMF has no SEV hashes table (its SEV metadata has no \
         SNP_KERNEL_HASHES section)"
    ));
    // In another page than the SNP_KERNEL_HASHES section, or across its end.
    for gpa in [0x0080_e000, 0x0080_ffc0] {
        assert_eq!(
            kernel_error_of(&area(gpa, 0x400)),
            format!(
                "SEV hashes table at GPA {gpa:#x} (176 bytes) does not lie in an \
                 SNP_KERNEL_HASHES section: QEMU would measure one page and OVMF read another"
            )
        );
    }
    // A hashes section of more than one page.
    let image = Image::amd_sev()
        .with_section(4, (0x0080_f000, 0x2000, KERNEL_HASHES))
        .build();
    assert_eq!(
        error_of(&image),
        "SEV metadata section 4 (SNP_KERNEL_HASHES at GPA 0x80f000, 0x2000 bytes): expected \
         exactly one 4096-byte page"
    );
}

#[test]
fn bad_launch_parameters_are_refused() {
    let image = Image::amd_sev().build();
    let error = |inputs: SnpInputs| {
        snp::launch_digest(&inputs)
            .expect_err("refused")
            .to_string()
    };
    assert_eq!(
        error(SnpInputs {
            vcpus: 0,
            ..inputs(&image)
        }),
        "vCPUs: expected 1 to 4096, found 0"
    );
    assert_eq!(
        error(SnpInputs {
            vcpus: 4097,
            ..inputs(&image)
        }),
        "vCPUs: expected 1 to 4096, found 4097"
    );
    assert_eq!(
        error(SnpInputs {
            guest_features: 0x20,
            ..inputs(&image)
        }),
        "guest features 0x20 lack bit 0 (SNPActive), which every SEV-SNP VMSA has"
    );
    assert_eq!(
        error(SnpInputs {
            initrd: Some(b"initrd"),
            ..inputs(&image)
        }),
        "initrd given without a kernel: QEMU hashes it only with -kernel"
    );
    assert_eq!(
        error(SnpInputs {
            cmdline: Some("console=ttyS0"),
            ..inputs(&image)
        }),
        "command line given without a kernel: QEMU hashes it only with -kernel"
    );
    // An AP reset address of 0 starts no AP.
    let image = Image::amd_sev()
        .with_entry(SEV_ES_RESET_BLOCK_GUID, vec![0; 4])
        .build();
    snp::launch_digest(&SnpInputs {
        vcpus: 1,
        ..inputs(&image)
    })
    .expect("one vCPU needs no AP reset address");
    assert_eq!(
        error(inputs(&image)),
        "the SEV-ES reset block gives the APs reset address 0: only 1 vCPU can start, 2 requested"
    );
}

#[test]
fn vcpu_types_parse_by_their_qemu_names() {
    assert_eq!("EPYC-Milan".parse::<VcpuType>(), Ok(VcpuType::EpycMilan));
    assert_eq!(
        "EPYC-Genoa-v1".parse::<VcpuType>(),
        Ok(VcpuType::EpycGenoaV1)
    );
    assert_eq!(VcpuType::EpycRomeV3.to_string(), "EPYC-Rome-v3");
    let error = "EPYC-Zen9"
        .parse::<VcpuType>()
        .expect_err("unknown")
        .to_string();
    assert_eq!(
        error,
        "unknown vCPU type \"EPYC-Zen9\": expected one of EPYC, EPYC-v1, EPYC-v2, EPYC-IBPB, \
         EPYC-v3, EPYC-v4, EPYC-Rome, EPYC-Rome-v1, EPYC-Rome-v2, EPYC-Rome-v3, EPYC-Milan, \
         EPYC-Milan-v1, EPYC-Milan-v2, EPYC-Genoa, EPYC-Genoa-v1, EPYC-Turin"
    );
}
