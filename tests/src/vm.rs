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

/// The accelerator the VM tests and the bench boot `image` with: `$var`
/// (`kvm` or `tcg`) if set, else what `kokon host` itself would take (KVM
/// when it runs the image's firmware here, TCG otherwise; the reason
/// printed).
pub fn accel(var: &str, image: &Path) -> String {
    if let Ok(accel) = std::env::var(var) {
        return accel;
    }
    let (accel, reason) = kokon_host::qemu::development_accel(
        Path::new("qemu-system-x86_64"),
        Path::new("/dev/kvm"),
        &image.join(kokon_image::OVMF_FILE),
    );
    if let Some(reason) = reason {
        eprintln!("the VM runs under TCG: KVM cannot run its firmware here ({reason}); {var}=kvm forces KVM");
    }
    accel.name().to_owned()
}

/// Starts `kokon host --backend qemu --tee none` on `port` for `image`,
/// with `--accel accel` if given (else the host chooses), its output (the
/// guest's console included) into `log`.
pub fn spawn_host(
    env: &Env,
    data: &Path,
    image: &Path,
    port: u16,
    accel: Option<&str>,
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
        ])
        .args(accel.map(|a| ["--accel", a]).into_iter().flatten())
        .env("KOKON_DATA_DIR", data)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?)
}
