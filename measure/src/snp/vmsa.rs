//! The initial VMSA (VM save area) of each vCPU, as QEMU and KVM hand it to
//! SNP_LAUNCH_UPDATE: the architectural reset state of an x86 CPU plus what
//! KVM sets (EFER.SVME, CR4.MCE), the CPUID signature in RDX and the SEV
//! features. Offsets are those of the SEV-ES save area, AMD64 Architecture
//! Programmer's Manual volume 2, table B-4.

use super::PAGE_SIZE;

/// Where the bootstrap processor starts: the x86 reset vector.
pub(super) const BSP_RESET_EIP: u32 = 0xffff_fff0;

/// Offsets of the save area's fields that are not zero at reset.
mod offset {
    pub const ES: usize = 0x000;
    pub const CS: usize = 0x010;
    pub const SS: usize = 0x020;
    pub const DS: usize = 0x030;
    pub const FS: usize = 0x040;
    pub const GS: usize = 0x050;
    pub const GDTR: usize = 0x060;
    pub const LDTR: usize = 0x070;
    pub const IDTR: usize = 0x080;
    pub const TR: usize = 0x090;
    pub const EFER: usize = 0x0d0;
    pub const CR4: usize = 0x148;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const G_PAT: usize = 0x268;
    pub const RDX: usize = 0x310;
    pub const SEV_FEATURES: usize = 0x3b0;
    pub const XCR0: usize = 0x3e8;
    pub const MXCSR: usize = 0x408;
    pub const X87_FCW: usize = 0x410;
}

/// A segment register as the save area holds it (`struct vmcb_seg`).
struct Segment {
    selector: u16,
    attributes: u16,
    limit: u32,
    base: u64,
}

impl Segment {
    /// A real-mode data segment at 0 (ES, SS, DS, FS, GS at reset).
    const fn data(attributes: u16) -> Self {
        Segment {
            selector: 0,
            attributes,
            limit: 0xffff,
            base: 0,
        }
    }

    fn bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut page = Page(&mut out);
        page.put(0, &self.selector.to_le_bytes());
        page.put(2, &self.attributes.to_le_bytes());
        page.put(4, &self.limit.to_le_bytes());
        page.put(8, &self.base.to_le_bytes());
        out
    }
}

/// Writes little-endian fields at fixed offsets into a buffer.
struct Page<'a>(&'a mut [u8]);

impl Page<'_> {
    /// Copies `bytes` to `offset`. The offsets are constants inside the
    /// buffer, so the range always exists; were it not to, nothing is
    /// written (and the differential tests would fail), never a panic.
    fn put(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(field) = offset
            .checked_add(bytes.len())
            .and_then(|end| self.0.get_mut(offset..end))
        {
            field.copy_from_slice(bytes);
        }
    }

    fn put_u64(&mut self, offset: usize, value: u64) {
        self.put(offset, &value.to_le_bytes());
    }

    fn put_segment(&mut self, offset: usize, segment: Segment) {
        self.put(offset, &segment.bytes());
    }
}

/// The save area of a vCPU that starts at `eip`, in the state QEMU with KVM
/// gives it: real mode, CS based so that CS:IP reaches `eip`, RDX holding
/// the CPUID signature, the given SEV features.
pub(super) fn vmsa_page(eip: u32, vcpu_signature: u32, sev_features: u64) -> [u8; PAGE_SIZE] {
    let mut out = [0u8; PAGE_SIZE];
    let mut page = Page(&mut out);
    page.put_segment(offset::ES, Segment::data(0x93));
    page.put_segment(
        offset::CS,
        Segment {
            selector: 0xf000,
            attributes: 0x9b,
            limit: 0xffff,
            base: u64::from(eip & 0xffff_0000),
        },
    );
    page.put_segment(offset::SS, Segment::data(0x93));
    page.put_segment(offset::DS, Segment::data(0x93));
    page.put_segment(offset::FS, Segment::data(0x93));
    page.put_segment(offset::GS, Segment::data(0x93));
    page.put_segment(offset::GDTR, Segment::data(0));
    page.put_segment(offset::LDTR, Segment::data(0x82));
    page.put_segment(offset::IDTR, Segment::data(0));
    page.put_segment(offset::TR, Segment::data(0x8b));
    // KVM sets EFER.SVME for SEV-ES guests and CR4.MCE.
    page.put_u64(offset::EFER, 0x1000);
    page.put_u64(offset::CR4, 0x40);
    // CR0.ET; DR6 and DR7 at their reset values; RFLAGS bit 1.
    page.put_u64(offset::CR0, 0x10);
    page.put_u64(offset::DR7, 0x400);
    page.put_u64(offset::DR6, 0xffff_0ff0);
    page.put_u64(offset::RFLAGS, 0x2);
    page.put_u64(offset::RIP, u64::from(eip & 0xffff));
    // The PAT MSR's reset value (APM volume 2, section A.3).
    page.put_u64(offset::G_PAT, 0x0007_0406_0007_0406);
    page.put_u64(offset::RDX, u64::from(vcpu_signature));
    page.put_u64(offset::SEV_FEATURES, sev_features);
    page.put_u64(offset::XCR0, 0x1);
    // QEMU's reset values of MXCSR and the x87 control word.
    page.put(offset::MXCSR, &0x1f80u32.to_le_bytes());
    page.put(offset::X87_FCW, &0x037fu16.to_le_bytes());
    out
}
