//! The data disk's dm-verity device, set up through the kernel's
//! device-mapper ioctls (`/dev/mapper/control`, linux/dm-ioctl.h).
//!
//! Written here rather than taken from a crate: the `devicemapper` crate
//! generates its bindings with bindgen (libclang at build time), and the
//! init needs three calls: create a device, load one `verity` target,
//! resume it. The structures are laid out by hand below, with the
//! offsets of the kernel's header.

#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::Context;
use kokon_wire::vm::DataVerity;

/// The device-mapper control device.
pub const CONTROL: &str = "/dev/mapper/control";
/// The interface version asked for: major 4, the kernel's since 2.6.
const VERSION: [u32; 3] = [4, 0, 0];
/// `sizeof(struct dm_ioctl)`.
const IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const TARGET_SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN`.
const NAME_LEN: usize = 128;
/// `DM_READONLY_FLAG`.
const READONLY_FLAG: u32 = 1;
/// The commands (`DM_DEV_CREATE_CMD`, ...).
const DEV_CREATE: u32 = 3;
const DEV_SUSPEND: u32 = 6;
const TABLE_LOAD: u32 = 9;

/// `_IOWR(DM_IOCTL, nr, struct dm_ioctl)` on x86-64: direction read|write
/// (3) in bits 30–31, the size in bits 16–29, the type 0xfd, the number.
const fn request(nr: u32) -> u32 {
    (3 << 30) | ((IOCTL_SIZE as u32) << 16) | (0xfd << 8) | nr
}

/// A `struct dm_ioctl` for the device `name` with `flags`, followed by
/// `payload`; `data_size` covers both.
fn message(name: &str, flags: u32, target_count: u32, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('/') {
        anyhow::bail!("device-mapper name {name:?}: expected 1 to 127 bytes, no '/'");
    }
    let data_size =
        u32::try_from(IOCTL_SIZE + payload.len()).context("device-mapper message too long")?;
    let mut buf = Vec::with_capacity(IOCTL_SIZE + payload.len());
    for word in VERSION {
        buf.extend(word.to_ne_bytes());
    }
    buf.extend(data_size.to_ne_bytes());
    buf.extend((IOCTL_SIZE as u32).to_ne_bytes()); // data_start
    buf.extend(target_count.to_ne_bytes());
    buf.extend(0i32.to_ne_bytes()); // open_count
    buf.extend(flags.to_ne_bytes());
    buf.extend(0u32.to_ne_bytes()); // event_nr
    buf.extend(0u32.to_ne_bytes()); // padding
    buf.extend(0u64.to_ne_bytes()); // dev
    buf.extend(name.as_bytes());
    buf.resize(48 + NAME_LEN, 0); // the name's NUL padding
    buf.resize(IOCTL_SIZE, 0); // uuid[129] and data[7]
    buf.extend(payload);
    Ok(buf)
}

/// One `struct dm_target_spec` (from sector 0, `sectors` long, of type
/// `target`) and its NUL-terminated parameters, padded to 8 bytes.
fn target(sectors: u64, target: &str, params: &str) -> anyhow::Result<Vec<u8>> {
    if target.is_empty() || target.len() >= 16 {
        anyhow::bail!("device-mapper target type {target:?}: expected 1 to 15 bytes");
    }
    if params.contains('\0') {
        anyhow::bail!("device-mapper parameters hold a NUL byte");
    }
    let len = (TARGET_SPEC_SIZE + params.len() + 1).next_multiple_of(8);
    let mut spec = Vec::with_capacity(len);
    spec.extend(0u64.to_ne_bytes()); // sector_start
    spec.extend(sectors.to_ne_bytes()); // length
    spec.extend(0i32.to_ne_bytes()); // status
    spec.extend(u32::try_from(len)?.to_ne_bytes()); // next
    spec.extend(target.as_bytes());
    spec.resize(TARGET_SPEC_SIZE, 0); // target_type[16]'s NUL padding
    spec.extend(params.as_bytes());
    spec.resize(len, 0); // the NUL and the padding
    Ok(spec)
}

/// The minor number in a reply's `dev` (the kernel's `huge_encode_dev`).
fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xfff00)
}

/// Runs one command with `buf`; returns the reply's `dev`.
fn call(control: &File, nr: u32, mut buf: Vec<u8>, what: &str) -> anyhow::Result<u64> {
    // SAFETY: `buf` is a valid `struct dm_ioctl` of `data_size` =
    // `buf.len()` bytes (at least IOCTL_SIZE), which the kernel reads and
    // writes back within that size.
    let rc = unsafe {
        nix::libc::ioctl(
            control.as_raw_fd(),
            request(nr) as nix::libc::c_ulong,
            buf.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| what.to_string());
    }
    let dev: [u8; 8] = buf
        .get(40..48)
        .and_then(|b| b.try_into().ok())
        .context("short device-mapper reply")?;
    Ok(u64::from_ne_bytes(dev))
}

/// Creates the read-only dm-verity device `name` over `device` (which holds
/// both the data and the hash tree) and returns its node, `/dev/dm-N`.
/// Every read from it is checked against `verity`'s root hash: a block that
/// does not match fails with an I/O error.
pub fn create_verity(name: &str, device: &str, verity: &DataVerity) -> anyhow::Result<PathBuf> {
    let control = File::options()
        .read(true)
        .write(true)
        .open(CONTROL)
        .with_context(|| format!("opening {CONTROL} (is dm_mod loaded?)"))?;
    call(
        &control,
        DEV_CREATE,
        message(name, 0, 0, &[])?,
        &format!("creating the device-mapper device {name}"),
    )?;
    let table = target(
        verity.data_sectors(),
        "verity",
        &verity.table_params(device),
    )?;
    call(
        &control,
        TABLE_LOAD,
        message(name, READONLY_FLAG, 1, &table)?,
        &format!("loading the verity table of {name} over {device} (is dm_verity loaded?)"),
    )?;
    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
    let dev = call(
        &control,
        DEV_SUSPEND,
        message(name, 0, 0, &[])?,
        &format!("activating {name}"),
    )?;
    Ok(PathBuf::from(format!("/dev/dm-{}", minor(dev))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(buf: &[u8], offset: usize) -> u32 {
        u32::from_ne_bytes(buf[offset..offset + 4].try_into().unwrap())
    }

    #[test]
    fn requests_are_the_kernels_numbers() {
        // DM_DEV_CREATE, DM_TABLE_LOAD and DM_DEV_SUSPEND as strace prints them on x86-64.
        assert_eq!(request(DEV_CREATE), 0xc138_fd03);
        assert_eq!(request(TABLE_LOAD), 0xc138_fd09);
        assert_eq!(request(DEV_SUSPEND), 0xc138_fd06);
    }

    #[test]
    fn a_table_load_is_the_header_then_one_target() {
        let spec = target(2400, "verity", "1 /dev/vda /dev/vda").unwrap();
        assert_eq!(spec.len(), 64); // 40 + 19 + NUL, padded to 8
        let msg = message("kokon-data", READONLY_FLAG, 1, &spec).unwrap();
        assert_eq!(msg.len(), IOCTL_SIZE + 64);
        assert_eq!([u32_at(&msg, 0), u32_at(&msg, 4), u32_at(&msg, 8)], VERSION);
        assert_eq!(u32_at(&msg, 12), (IOCTL_SIZE + 64) as u32); // data_size
        assert_eq!(u32_at(&msg, 16), IOCTL_SIZE as u32); // data_start
        assert_eq!(u32_at(&msg, 20), 1); // target_count
        assert_eq!(u32_at(&msg, 28), READONLY_FLAG);
        assert_eq!(&msg[48..58], b"kokon-data");
        assert_eq!(msg[58], 0);
        let spec = &msg[IOCTL_SIZE..];
        assert_eq!(u64::from_ne_bytes(spec[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 2400);
        assert_eq!(u32_at(spec, 20), 64); // next
        assert_eq!(&spec[24..31], b"verity\0");
        assert_eq!(&spec[40..60], b"1 /dev/vda /dev/vda\0");
    }

    #[test]
    fn bad_names_types_and_parameters_are_refused() {
        assert!(message("", 0, 0, &[]).is_err());
        assert!(message(&"x".repeat(128), 0, 0, &[]).is_err());
        assert!(message("a/b", 0, 0, &[]).is_err());
        assert!(target(8, "", "x").is_err());
        assert!(target(8, "sixteen-bytes-xx", "x").is_err());
        assert!(target(8, "verity", "a\0b").is_err());
    }

    #[test]
    fn minors_decode_from_the_kernels_device_numbers() {
        // huge_encode_dev(MKDEV(254, 0)) and (254, 300).
        assert_eq!(minor(254 << 8), 0);
        assert_eq!(
            minor((254 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)),
            300
        );
    }
}
