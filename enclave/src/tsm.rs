//! Hardware evidence through Linux configfs-tsm (kernel 6.7+), for TDX and
//! SEV-SNP alike, and RTMR extension through the TDX guest's sysfs
//! measurement files (kernel 6.16+).
//!
//! A report is requested by creating a directory under
//! `/sys/kernel/config/tsm/report/`, writing the 64 bytes of report data to
//! its `inblob`, and reading `outblob` (the TDX quote or SNP report),
//! `auxblob` (SNP: the host's certificate table) and `provider`
//! ("tdx_guest" or "sev_guest"). The `generation` attribute counts writes to
//! the entry: it is read after our write and again after the reads, and
//! must be 1 both times, or another writer raced us and the blob may not be
//! ours. Each request uses a fresh directory, removed afterwards.
//!
//! Every path is a parameter so that tests can run all of this against a
//! fake tree in a temporary directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Where the kernel mounts configfs-tsm reports.
pub const DEFAULT_TSM_ROOT: &str = kokon_wire::TSM_REPORT_ROOT;
/// Where the TDX guest driver exposes its measurement registers.
pub const DEFAULT_TDX_SYSFS: &str = "/sys/class/misc/tdx_guest";
/// configfs-tsm provider name of a TDX guest.
pub const PROVIDER_TDX: &str = "tdx_guest";
/// configfs-tsm provider name of an SEV-SNP guest.
pub const PROVIDER_SNP: &str = "sev_guest";
/// Largest blob read from the kernel.
const MAX_BLOB: u64 = 1 << 20;
/// How long to wait for the generation to reflect our write. The kernel
/// updates it synchronously; the bound only guards against a broken tree.
const GENERATION_WAIT: Duration = Duration::from_secs(2);

/// A report fetched from configfs-tsm.
#[derive(Debug, Clone)]
pub struct TsmReport {
    /// The provider that produced it.
    pub provider: String,
    /// The evidence: a TDX quote or an SNP report.
    pub outblob: Vec<u8>,
    /// SNP: the certificate table, when the host provides one.
    pub auxblob: Option<Vec<u8>>,
}

/// Numbers report directories uniquely within this process.
static ENTRY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A configfs-tsm report interface rooted at a directory.
#[derive(Debug)]
pub struct Tsm {
    root: PathBuf,
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(MAX_BLOB + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {}", path.display()))?;
    if out.len() as u64 > MAX_BLOB {
        bail!("{} is larger than {MAX_BLOB} bytes", path.display());
    }
    Ok(out)
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&read_bounded(path)?)
        .trim()
        .to_string())
}

impl Tsm {
    /// Opens the interface at `root`; fails when it does not exist.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        if !root.is_dir() {
            bail!(
                "configfs-tsm not found at {} (needs Linux 6.7+ with CONFIG_TSM_REPORTS in a TDX or SEV-SNP guest)",
                root.display()
            );
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The provider of this machine's TSM ("tdx_guest", "sev_guest").
    pub fn provider(&self) -> anyhow::Result<String> {
        let entry = self.entry()?;
        let provider = read_attr(&entry.0.join("provider"));
        drop(entry);
        provider
    }

    fn entry(&self) -> anyhow::Result<Entry> {
        let n = ENTRY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("kokon-{}-{n}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Entry(dir))
    }

    /// Requests a report binding `report_data` from the `expected` provider.
    pub fn report(&self, report_data: &[u8; 64], expected: &str) -> anyhow::Result<TsmReport> {
        let entry = self.entry()?;
        let dir = &entry.0;
        fs::write(dir.join("inblob"), report_data)
            .with_context(|| format!("writing {}/inblob", dir.display()))?;
        let generation = wait_generation(&dir.join("generation"))?;
        let provider = read_attr(&dir.join("provider"))?;
        if provider != expected {
            bail!("configfs-tsm provider is {provider:?}, expected {expected:?}");
        }
        let outblob = read_bounded(&dir.join("outblob"))?;
        let aux_path = dir.join("auxblob");
        let auxblob = match aux_path.exists() {
            true => Some(read_bounded(&aux_path)?).filter(|a| !a.is_empty()),
            false => None,
        };
        let after = read_text(&dir.join("generation"))?;
        if after != generation.to_string() {
            bail!(
                "configfs-tsm entry {} was written concurrently (generation {generation} before reading, {after} after): the report may not be ours",
                dir.display()
            );
        }
        if outblob.is_empty() {
            bail!("configfs-tsm returned an empty outblob");
        }
        Ok(TsmReport {
            provider,
            outblob,
            auxblob,
        })
    }
}

/// Reads an attribute that configfs creates with the directory. The kernel
/// has it ready, and never empty, at once; the bounded wait only covers a tree
/// that fills in attributes asynchronously (the tests' fake kernel, whose
/// file may be seen created but not yet written).
fn read_attr(path: &Path) -> anyhow::Result<String> {
    let deadline = Instant::now() + GENERATION_WAIT;
    loop {
        match read_text(path) {
            Ok(text) if !text.is_empty() => return Ok(text),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            result => return result,
        }
    }
}

/// Waits until `generation` shows our single write, and returns it.
fn wait_generation(path: &Path) -> anyhow::Result<u64> {
    let deadline = Instant::now() + GENERATION_WAIT;
    loop {
        let text = read_text(path).unwrap_or_default();
        match text.parse::<u64>() {
            Ok(1) => return Ok(1),
            Ok(g) if g > 1 => bail!(
                "configfs-tsm generation is {g} after our one write to {}: another writer raced us",
                path.display()
            ),
            _ if Instant::now() >= deadline => bail!(
                "configfs-tsm generation at {} did not reflect the inblob write (read {text:?})",
                path.display()
            ),
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A report directory, removed when dropped.
struct Entry(PathBuf);

impl Drop for Entry {
    fn drop(&mut self) {
        // configfs removes the attribute files with the directory; a plain
        // directory (a fake tree) needs them removed first.
        if fs::remove_dir(&self.0).is_err() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
