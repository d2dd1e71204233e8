//! The worker VM from the tests' and the bench's side: images built and
//! measured with the `kokon` command, and hosts that boot them.

use std::path::Path;

use crate::{repo_root, Env};

/// The development policy for VMs, before its measurements are filled in.
pub const DEV_VM_POLICY: &str = "policies/dev-vm.toml";

/// Runs `kokon ARGS` with `data` as its data directory; its standard output.
pub fn kokon(env: &Env, data: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(&env.kokon_bin)
        .args(args)
        .env("KOKON_DATA_DIR", data)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kokon {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// Builds an image of this build's enclave and init, serving magika at
/// `price`, into `dir`, with `extra` arguments for `kokon image build`.
pub fn build_image(
    env: &Env,
    data: &Path,
    dir: &Path,
    price: u128,
    extra: &[&str],
) -> anyhow::Result<()> {
    let bin = env
        .kokon_bin
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no directory", env.kokon_bin.display()))?;
    kokon(
        env,
        data,
        &[
            "image",
            "build",
            "--out",
            &arg(dir),
            "--enclave",
            &arg(&env.enclave_bin),
            "--init",
            &arg(&bin.join("kokon-init")),
            "--model",
            &arg(&env.model),
            "--price-nanoton-per-unit",
            &price.to_string(),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    )
    .map(drop)
}

/// The development VM policy with the image's TDX measurements, as an auditor writes it.
pub fn measured_policy(env: &Env, data: &Path, image: &Path) -> anyhow::Result<String> {
    kokon(
        env,
        data,
        &[
            "audit",
            "measure",
            "--image",
            &arg(image),
            "--tee",
            "tdx",
            "--policy-snippet",
            "--into",
            &arg(&repo_root().join(DEV_VM_POLICY)),
        ],
    )
}

/// Starts `kokon host --backend qemu --tee none` on `port` for `image`,
/// with `accel`, its output (the guest's console included) into `log`.
pub fn spawn_host(
    env: &Env,
    data: &Path,
    image: &Path,
    port: u16,
    accel: &str,
    log: std::fs::File,
) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(&env.kokon_bin)
        .args([
            "host",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--backend",
            "qemu",
            "--image",
            &arg(image),
            "--tee",
            "none",
            "--accel",
            accel,
        ])
        .env("KOKON_DATA_DIR", data)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?)
}

/// A 64 KiB firmware shaped like the tail of an OVMF built from edk2's
/// `OvmfPkg/AmdSev/AmdSevX64.dsc` (which Debian does not ship): the SEV
/// metadata ("ASEV": pre-validated memory, secrets, CPUID, and the
/// kernel-hashes page) 4 KiB before the end, and the footer GUID table
/// pointing at it, at the SEV-ES reset block and at the hashes table. Its
/// other bytes are a fixed pattern. Enough for SEV-SNP's launch digest, not
/// to boot.
pub fn amdsev_shaped_firmware() -> Result<Vec<u8>, uuid::Error> {
    const LEN: usize = 64 * 1024;
    let mut image: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let le = |v: u32| v.to_le_bytes();
    // (GPA, size, type): SEC_MEM 1, SECRETS 2, CPUID 3, KERNEL_HASHES 0x10.
    let sections: [(u32, u32, u32); 5] = [
        (0x0080_0000, 0x9000, 1),
        (0x0080_a000, 0x3000, 1),
        (0x0080_d000, 0x1000, 2),
        (0x0080_e000, 0x1000, 3),
        (0x0080_f000, 0x1000, 0x10),
    ];
    let mut metadata = b"ASEV".to_vec();
    metadata.extend(le(16 + 12 * sections.len() as u32));
    metadata.extend(le(1));
    metadata.extend(le(sections.len() as u32));
    for (gpa, size, kind) in sections {
        metadata.extend([le(gpa), le(size), le(kind)].concat());
    }
    let guid = |text: &str| uuid::Uuid::parse_str(text).map(|g| g.to_bytes_le());
    let entries: [(&str, Vec<u8>); 3] = [
        (
            "7255371f-3a3b-4b04-927b-1da6efa8d454",
            [le(0x0080_fc00), le(0x400)].concat(),
        ),
        ("dc886566-984a-4798-a75e-5585a7bf67cc", le(0x1000).to_vec()),
        (
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
            le(0x0080_b004).to_vec(),
        ),
    ];
    let mut table = Vec::new();
    for (id, data) in entries {
        table.extend(&data);
        table.extend((data.len() as u16 + 18).to_le_bytes());
        table.extend(guid(id)?);
    }
    table.extend((table.len() as u16 + 18).to_le_bytes());
    table.extend(guid("96b582de-1fb2-45f7-baea-a366c55a082d")?);
    let at = LEN - 0x1000;
    image.splice(at..at + metadata.len(), metadata);
    let end = LEN - 32;
    image.splice(end - table.len()..end, table);
    Ok(image)
}
