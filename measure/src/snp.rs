//! The SEV-SNP launch digest of a kokon worker VM: the `MEASUREMENT` field of
//! its attestation reports, recomputed offline from the files QEMU launches
//! it with.
//!
//! QEMU (`-object sev-snp-guest,...,kernel-hashes=on`, `-bios OVMF.fd
//! -kernel -initrd -append`) hands the AMD secure processor the guest's
//! initial pages with SNP_LAUNCH_UPDATE, and the processor chains a SHA-384
//! over one PAGE_INFO structure per page (SEV-SNP Firmware ABI
//! Specification, SNP_LAUNCH_UPDATE and the PAGE_INFO layout):
//!
//! 1. the OVMF flash image, mapped to end at 4 GiB, as NORMAL pages;
//! 2. each section of OVMF's SEV metadata, in order: SNP_SEC_MEM and
//!    SVSM_CAA as ZERO pages, the SNP_SECRETS and CPUID pages (filled by
//!    the processor), and the SNP_KERNEL_HASHES page holding the SEV hashes
//!    table of kernel, initrd and command line (NORMAL; ZERO without a
//!    kernel);
//! 3. one VMSA per vCPU: the bootstrap processor at the reset vector, the
//!    others at OVMF's SEV-ES reset block, with the vCPU type's CPUID
//!    signature in RDX and the guest's SEV features.
//!
//! The result equals sev-snp-measure 0.0.13's (`--mode snp`, QEMU) on every
//! input both accept (`measure/tests/snp_differential.rs`).

mod hashes;
mod ovmf;
mod vcpu;
mod vmsa;

use kokon_bytes::ReadError;
use sha2::{Digest, Sha384};
use thiserror::Error;
use uuid::Uuid;

pub use ovmf::{Section, SectionKind};
pub use vcpu::VcpuType;

use crate::ovmf::FooterTableError;
use crate::Register;
use hashes::{SevHashes, PADDED_TABLE_SIZE};
use ovmf::Ovmf;

/// Guest pages are 4 KiB.
const PAGE_SIZE: usize = 4096;

/// The most vCPUs measured: KVM's largest `KVM_MAX_VCPUS`.
pub const MAX_VCPUS: u32 = 4096;

/// The guest features QEMU and KVM launch an SEV-SNP guest with unless told
/// otherwise: SNPActive (bit 0) only.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// Bit 0 of SEV_FEATURES: the guest is an SEV-SNP guest.
const SNP_ACTIVE: u64 = 1;

/// What the secure processor measures at an SEV-SNP launch by QEMU.
#[derive(Clone, Copy)]
pub struct SnpInputs<'a> {
    /// The OVMF flash image given to `-bios` (untrusted: parsed strictly).
    pub ovmf: &'a [u8],
    /// The kernel given to `-kernel`, with `kernel-hashes=on`; `None` for a
    /// launch without kernel hashes (the hashes page is then zero).
    pub kernel: Option<&'a [u8]>,
    /// The initrd given to `-initrd` (needs a kernel).
    pub initrd: Option<&'a [u8]>,
    /// The command line given to `-append` (needs a kernel).
    pub cmdline: Option<&'a str>,
    /// The number of vCPUs (`-smp`): one VMSA each.
    pub vcpus: u32,
    /// The `-cpu` model, whose CPUID signature every VMSA holds.
    pub vcpu_type: VcpuType,
    /// The VMSAs' SEV_FEATURES: 0x1 (SNPActive alone) is what QEMU and KVM
    /// set unless asked for more (sev-snp-measure's `--guest-features`).
    pub guest_features: u64,
}

/// Why a launch digest could not be computed: the firmware image is not an
/// OVMF an SEV-SNP launch can use, or the inputs do not describe a launch.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SnpError {
    /// A structure of the image ended early.
    #[error("OVMF image: {0}")]
    Read(#[from] ReadError),
    /// The image cannot be mapped below 4 GiB in whole pages.
    #[error(
        "OVMF image: {len} bytes; expected a non-empty whole number of 4096-byte pages, \
         at most 4 GiB"
    )]
    ImageSize {
        /// The image's length.
        len: usize,
    },
    /// The footer table is malformed.
    #[error(transparent)]
    FooterTable(#[from] FooterTableError),
    /// A needed entry is missing.
    #[error(
        "OVMF footer table has no {what} entry (GUID {guid}): not an OVMF built with SEV support"
    )]
    MissingEntry {
        /// What the entry holds.
        what: &'static str,
        /// Its GUID.
        guid: Uuid,
    },
    /// An entry is shorter than what it must hold.
    #[error(
        "OVMF footer table: the {what} entry holds {found} bytes, expected at least {expected}"
    )]
    EntryData {
        /// What the entry holds.
        what: &'static str,
        /// The bytes it needs.
        expected: usize,
        /// The bytes it has.
        found: usize,
    },
    /// The SEV metadata's offset points outside the image.
    #[error("SEV metadata: offset {offset} from the image's end lies outside its {len} bytes")]
    MetadataOffset {
        /// The offset from the end.
        offset: u32,
        /// The image's length.
        len: usize,
    },
    /// The SEV metadata does not start with "ASEV".
    #[error("SEV metadata: expected signature \"ASEV\", found \"{}\"", found.escape_ascii())]
    MetadataSignature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The SEV metadata has a version other than 1.
    #[error("SEV metadata: expected version 1, found {found}")]
    MetadataVersion {
        /// The version found.
        found: u32,
    },
    /// The SEV metadata's size cannot hold its sections.
    #[error(
        "SEV metadata: size {size} cannot hold its header and {count} sections ({needed} bytes)"
    )]
    MetadataSize {
        /// The size in the header.
        size: u32,
        /// The section count in the header.
        count: u32,
        /// The bytes header and sections need.
        needed: u64,
    },
    /// A section has a type edk2 does not define.
    #[error(
        "SEV metadata section {index}: unknown type {found:#x} (expected 1 SNP_SEC_MEM, \
         2 SNP_SECRETS, 3 CPUID, 4 SVSM_CAA or 0x10 SNP_KERNEL_HASHES)"
    )]
    SectionType {
        /// The section's index.
        index: u32,
        /// The type found.
        found: u32,
    },
    /// A section is empty or not page-aligned.
    #[error(
        "SEV metadata section {index} ({section}): GPA and size must be page-aligned \
         (multiples of 4096) and the size non-zero"
    )]
    SectionUnaligned {
        /// The section's index.
        index: u32,
        /// The section.
        section: Section,
    },
    /// A section ends above 4 GiB.
    #[error("SEV metadata section {index} ({section}): ends above 4 GiB")]
    SectionRange {
        /// The section's index.
        index: u32,
        /// The section.
        section: Section,
    },
    /// A secrets, CPUID or hashes section is not one page.
    #[error("SEV metadata section {index} ({section}): expected exactly one 4096-byte page")]
    SectionNotOnePage {
        /// The section's index.
        index: u32,
        /// The section.
        section: Section,
    },
    /// A kernel was given but the firmware has nowhere to put its hashes.
    #[error(
        "kernel given but this OVMF has no SEV hashes table ({reason}): QEMU's \
         kernel-hashes=on needs OVMF built from OvmfPkg/AmdSev/AmdSevX64.dsc (Debian's \
         ovmf-amdsev package, OVMF.amdsev.fd; its generic OVMF.fd and OVMF_CODE*.fd reserve none)"
    )]
    NoHashTable {
        /// What is missing.
        reason: String,
    },
    /// The SEV hashes table does not lie in an SNP_KERNEL_HASHES section.
    #[error(
        "SEV hashes table at GPA {gpa:#x} ({len} bytes) does not lie in an SNP_KERNEL_HASHES \
         section: QEMU would measure one page and OVMF read another"
    )]
    HashTableOutsideSection {
        /// The table's GPA.
        gpa: u32,
        /// The table's length.
        len: u32,
    },
    /// An initrd or command line was given without a kernel.
    #[error("{what} given without a kernel: QEMU hashes it only with -kernel")]
    WithoutKernel {
        /// `initrd` or `command line`.
        what: &'static str,
    },
    /// The vCPU count is out of range.
    #[error("vCPUs: expected 1 to {MAX_VCPUS}, found {found}")]
    Vcpus {
        /// The count given.
        found: u32,
    },
    /// More than one vCPU, but the firmware gives the APs no reset address.
    #[error(
        "the SEV-ES reset block gives the APs reset address 0: only 1 vCPU can start, {vcpus} requested"
    )]
    NoApResetAddress {
        /// The vCPUs requested.
        vcpus: u32,
    },
    /// The SEV features lack SNPActive.
    #[error("guest features {found:#x} lack bit 0 (SNPActive), which every SEV-SNP VMSA has")]
    NotSnp {
        /// The features given.
        found: u64,
    },
    /// A vCPU type name QEMU's EPYC models do not include.
    #[error("unknown vCPU type {found:?}: expected one of {known}")]
    UnknownVcpuType {
        /// The name given.
        found: String,
        /// The names known.
        known: String,
    },
}

/// The SEV-SNP launch digest (the attestation report's `MEASUREMENT`).
pub fn launch_digest(inputs: &SnpInputs) -> Result<[u8; 48], SnpError> {
    Ok(measure(inputs)?.digest)
}

/// The expected `snp_measurement` register, with how it was computed.
pub fn expected(inputs: &SnpInputs) -> Result<Vec<Register>, SnpError> {
    let measurement = measure(inputs)?;
    Ok(vec![Register {
        name: "snp_measurement",
        value: measurement.digest.to_vec(),
        explanation: measurement.explanation,
    }])
}

/// A digest and the steps that produced it.
struct Measurement {
    digest: [u8; 48],
    explanation: Vec<String>,
}

/// Runs the launch's SNP_LAUNCH_UPDATE sequence.
fn measure(inputs: &SnpInputs) -> Result<Measurement, SnpError> {
    check_inputs(inputs)?;
    let ovmf = Ovmf::parse(inputs.ovmf)?;
    if inputs.vcpus > 1 && ovmf.ap_reset_eip == 0 {
        return Err(SnpError::NoApResetAddress {
            vcpus: inputs.vcpus,
        });
    }
    let hashes_page = match inputs.kernel {
        Some(kernel) => Some(hashes_table_page(&ovmf, kernel, inputs)?),
        None => None,
    };
    let mut digest = LaunchDigest::new();
    let mut explanation = Vec::new();
    measure_firmware(&mut digest, &ovmf, &mut explanation);
    measure_sections(&mut digest, &ovmf, hashes_page.as_ref(), &mut explanation);
    measure_vmsas(&mut digest, &ovmf, inputs, &mut explanation);
    explanation.push(format!(
        "launch digest (MEASUREMENT): {}",
        hex::encode(digest.0)
    ));
    Ok(Measurement {
        digest: digest.0,
        explanation,
    })
}

/// What the inputs alone must satisfy.
fn check_inputs(inputs: &SnpInputs) -> Result<(), SnpError> {
    if inputs.vcpus == 0 || inputs.vcpus > MAX_VCPUS {
        return Err(SnpError::Vcpus {
            found: inputs.vcpus,
        });
    }
    if inputs.guest_features & SNP_ACTIVE == 0 {
        return Err(SnpError::NotSnp {
            found: inputs.guest_features,
        });
    }
    if inputs.kernel.is_none() {
        if inputs.initrd.is_some() {
            return Err(SnpError::WithoutKernel { what: "initrd" });
        }
        if inputs.cmdline.is_some() {
            return Err(SnpError::WithoutKernel {
                what: "command line",
            });
        }
    }
    Ok(())
}

/// The SEV hashes table page QEMU builds for the kernel, initrd and
/// command line, and how it was built.
fn hashes_table_page(
    ovmf: &Ovmf<'_>,
    kernel: &[u8],
    inputs: &SnpInputs,
) -> Result<HashesPage, SnpError> {
    let offset = ovmf.hash_table_offset(PADDED_TABLE_SIZE)?;
    let hashes = SevHashes::new(kernel, inputs.initrd, inputs.cmdline);
    // `hash_table_offset` found the area, so it is there.
    let gpa = ovmf.hash_table.map_or(0, |area| area.gpa);
    let explanation = vec![
        format!(
            "SEV hashes table at GPA {gpa:#x}, offset {offset:#x} of its page ({PADDED_TABLE_SIZE} \
             bytes, as QEMU pads it):"
        ),
        format!(
            "  kernel: {} bytes, SHA-256 {}",
            kernel.len(),
            hex::encode(hashes.kernel)
        ),
        format!(
            "  initrd: {} bytes, SHA-256 {}",
            inputs.initrd.map_or(0, <[u8]>::len),
            hex::encode(hashes.initrd)
        ),
        format!(
            "  command line: {:?} and its NUL, SHA-256 {}",
            inputs.cmdline.unwrap_or_default(),
            hex::encode(hashes.cmdline)
        ),
    ];
    Ok(HashesPage {
        page: hashes.page(offset),
        explanation,
    })
}

/// The page QEMU writes into each SNP_KERNEL_HASHES section.
struct HashesPage {
    page: [u8; PAGE_SIZE],
    explanation: Vec<String>,
}

/// Step 1: the flash image, page by page.
fn measure_firmware(digest: &mut LaunchDigest, ovmf: &Ovmf<'_>, explanation: &mut Vec<String>) {
    digest.normal_pages(ovmf.gpa(), ovmf.image);
    explanation.push(format!(
        "OVMF: {} bytes, SHA-384 {}, mapped at GPA {:#x} to 4 GiB: {} NORMAL pages",
        ovmf.image.len(),
        hex::encode(Sha384::digest(ovmf.image)),
        ovmf.gpa(),
        ovmf.image.len() / PAGE_SIZE
    ));
    explanation.push(format!(
        "launch digest after the firmware (sev-snp-measure's snp:ovmf-hash): {}",
        hex::encode(digest.0)
    ));
}

/// Step 2: each SEV metadata section, in the order OVMF lists them.
fn measure_sections(
    digest: &mut LaunchDigest,
    ovmf: &Ovmf<'_>,
    hashes: Option<&HashesPage>,
    explanation: &mut Vec<String>,
) {
    for (index, section) in ovmf.sections.iter().enumerate() {
        let pages = section.size / PAGE_SIZE as u64;
        let how = match (section.kind, hashes) {
            (SectionKind::SecMem | SectionKind::SvsmCaa, _) => {
                digest.empty_pages(PageType::Zero, section);
                format!("{pages} ZERO page{}", if pages == 1 { "" } else { "s" })
            }
            (SectionKind::Secrets, _) => {
                digest.empty_pages(PageType::Secrets, section);
                "1 SECRETS page".to_owned()
            }
            (SectionKind::Cpuid, _) => {
                digest.empty_pages(PageType::Cpuid, section);
                "1 CPUID page".to_owned()
            }
            (SectionKind::KernelHashes, Some(hashes)) => {
                digest.normal_pages(section.gpa, &hashes.page);
                "1 NORMAL page holding the SEV hashes table".to_owned()
            }
            (SectionKind::KernelHashes, None) => {
                digest.empty_pages(PageType::Zero, section);
                "1 ZERO page (no kernel: no SEV hashes table)".to_owned()
            }
        };
        explanation.push(format!("SEV metadata section {index}: {section}: {how}"));
    }
    if let Some(hashes) = hashes {
        explanation.extend(hashes.explanation.iter().cloned());
    }
}

/// Step 3: one VMSA per vCPU, the bootstrap processor's first.
fn measure_vmsas(
    digest: &mut LaunchDigest,
    ovmf: &Ovmf<'_>,
    inputs: &SnpInputs,
    explanation: &mut Vec<String>,
) {
    let signature = inputs.vcpu_type.signature();
    let bsp = vmsa::vmsa_page(vmsa::BSP_RESET_EIP, signature, inputs.guest_features);
    let ap = vmsa::vmsa_page(ovmf.ap_reset_eip, signature, inputs.guest_features);
    digest.vmsa_page(&bsp);
    for _ in 1..inputs.vcpus {
        digest.vmsa_page(&ap);
    }
    explanation.push(format!(
        "{} VMSA pages: vCPU type {} (CPUID signature {signature:#010x} in RDX), SEV features \
         (guest features) {:#x}",
        inputs.vcpus, inputs.vcpu_type, inputs.guest_features
    ));
    explanation.push(format!(
        "  BSP at {:#x}: VMSA SHA-384 {}",
        vmsa::BSP_RESET_EIP,
        hex::encode(Sha384::digest(bsp))
    ));
    if inputs.vcpus > 1 {
        explanation.push(format!(
            "  {} APs at the SEV-ES reset block's {:#x}: VMSA SHA-384 {}",
            inputs.vcpus - 1,
            ovmf.ap_reset_eip,
            hex::encode(Sha384::digest(ap))
        ));
    }
}

/// The page types of SNP_LAUNCH_UPDATE this launch uses.
#[derive(Debug, Clone, Copy)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Secrets = 5,
    Cpuid = 6,
}

/// The GPA in every VMSA page's PAGE_INFO (KVM gives VMSAs no guest address;
/// this is the value sev-snp-measure uses).
const VMSA_GPA: u64 = 0x0000_ffff_ffff_f000;

/// The running launch digest, zero before the first page.
struct LaunchDigest([u8; 48]);

impl LaunchDigest {
    fn new() -> Self {
        LaunchDigest([0; 48])
    }

    /// Extends the digest with one page: SHA-384 of the PAGE_INFO structure
    /// (the digest so far, the page's contents digest, the structure's
    /// length 0x70, the page type, IMI_PAGE 0, VMPL3/2/1 permissions 0, a
    /// reserved byte, the GPA).
    fn extend(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        const PAGE_INFO_LEN: u16 = 0x70;
        let mut page_info = Sha384::new();
        page_info.update(self.0);
        page_info.update(contents);
        page_info.update(PAGE_INFO_LEN.to_le_bytes());
        page_info.update([page_type as u8, 0, 0, 0, 0, 0]);
        page_info.update(gpa.to_le_bytes());
        self.0 = page_info.finalize().into();
    }

    /// Pages with contents (the firmware, the hashes table): their SHA-384.
    /// `data` is a whole number of pages (the image's size was checked).
    fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (index, page) in data.chunks(PAGE_SIZE).enumerate() {
            let page_gpa = gpa + (index * PAGE_SIZE) as u64;
            self.extend(PageType::Normal, page_gpa, &Sha384::digest(page).into());
        }
    }

    /// Pages whose contents the processor fixes (zero, secrets, CPUID):
    /// their contents digest is zero.
    fn empty_pages(&mut self, page_type: PageType, section: &Section) {
        for offset in (0..section.size).step_by(PAGE_SIZE) {
            self.extend(page_type, section.gpa + offset, &[0; 48]);
        }
    }

    /// One VMSA.
    fn vmsa_page(&mut self, vmsa: &[u8; PAGE_SIZE]) {
        self.extend(PageType::Vmsa, VMSA_GPA, &Sha384::digest(vmsa).into());
    }
}
