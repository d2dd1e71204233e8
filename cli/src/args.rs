//! The `kokon` command line: every command and its arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The `kokon` command.
#[derive(Parser)]
#[command(
    name = "kokon",
    version,
    about = "Confidential inference: attested enclaves, sealed requests, signed receipts"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Also trust the certificate authorities in this PEM file when
    /// connecting to an `https://` host (a private CA's; the Mozilla roots
    /// are always trusted).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// How log lines (stderr) are written: `text` for people, `json` (one
    /// object a line) for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "KOKON_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line an event.
    Text,
    /// One JSON object an event (timestamp, level, target, fields).
    Json,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the host shim and its enclave.
    Host(Box<HostArgs>),
    /// Fetch and verify an enclave's attestation.
    Attest {
        /// The host's base URL.
        #[arg(long)]
        host: String,
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Save the verified bundle here.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also write the verification report here as a self-contained HTML
        /// page (written for a rejected enclave too, saying why).
        #[arg(long, value_name = "FILE.html")]
        report: Option<PathBuf>,
    },
    /// Verify a saved attestation bundle, or raw TDX/SNP evidence, offline.
    ///
    /// With --bundle (and --policy): the evidence, its binding of the claims
    /// and the policy; the nonce is not checked. With --evidence: the quote or
    /// report's signatures, chain and collateral (given, or fetched from the
    /// vendors with --fetch-collateral); without --policy the evidence must
    /// also be UpToDate (TDX), exit 2 otherwise.
    Verify(Box<VerifyArgs>),
    /// Verify the enclave, then classify a file privately (--file) or send
    /// tensors from files to its model (--input).
    Infer(InferArgs),
    /// Verify the enclave, then chat with its text model privately
    /// (interactive when no prompt is given).
    Chat(ChatArgs),
    /// A local OpenAI-compatible endpoint (plain HTTP, for unmodified SDKs)
    /// that attests the enclave, seals every request to it, checks every
    /// receipt and pays for it.
    Proxy(ProxyArgs),
    /// Auditor tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The client's payment channel on TON.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// The worker VM's guest image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Shell completions for kokon (bash, zsh, fish, elvish, powershell), on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// kokon's manual page (roff), on stdout: `kokon man > kokon.1`.
    Man,
    /// The whole story on this machine: host, enclave, attestation, private inference.
    Demo {
        /// Policy for the local sim enclave.
        #[arg(long, default_value = "policies/dev-sim.toml")]
        policy: PathBuf,
        /// Files to classify after the built-in sample.
        #[arg(long)]
        file: Vec<PathBuf>,
        /// Run the enclave in the worker VM booted from this image (`kokon
        /// image build`, with the demo's price), attested with the
        /// development VM policy filled in with the image's measurements.
        #[arg(long, value_name = "DIR")]
        vm: Option<PathBuf>,
        /// With --vm: `kvm` or `tcg` (default: KVM when it runs the image's firmware here, TCG otherwise).
        #[arg(long, requires = "vm")]
        accel: Option<String>,
    },
}

/// `kokon channel ...`.
#[derive(Subcommand)]
pub enum ChannelCommand {
    /// Deploy, fund and open a channel from the client's wallet (v4r2).
    Open {
        /// The network file (endpoint, api_key).
        #[arg(long)]
        network: PathBuf,
        /// The host's channel key (hex).
        #[arg(long)]
        host_key: String,
        /// The host's payout address.
        #[arg(long)]
        host_address: String,
        /// Nanotons to lock.
        #[arg(long)]
        deposit: u128,
        /// Where to keep the channel (holds the client's key; mode 0600). The
        /// key is drawn once into OUT with the extension `.key`.
        #[arg(long)]
        out: PathBuf,
    },
    /// The channel's state: newest voucher (and its BOC), on-chain state.
    Status {
        /// The channel file.
        #[arg(long)]
        channel: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Close cooperatively with the host at the newest voucher.
    Close {
        /// The channel file.
        #[arg(long)]
        channel: PathBuf,
        /// The host's base URL.
        #[arg(long)]
        host: String,
    },
}

/// `kokon image ...`.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build the worker VM's guest image, reproducibly, from the Debian
    /// packages and the ONNX Runtime wheel pinned in the lock file, this
    /// build's enclave and init, and the magika model.
    Build(Box<ImageBuildArgs>),
    /// Pin the newest Debian packages (and the wheel) in the lock file.
    Lock {
        /// The lock file (default: image/debian.lock of this checkout).
        #[arg(long)]
        lock: Option<PathBuf>,
    },
}

/// `kokon image build`.
#[derive(clap::Args, Clone)]
pub struct ImageBuildArgs {
    /// The directory to write the image to (OVMF.fd, OVMF.amdsev.fd, vmlinuz, initrd.img, cmdline, manifest.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The lock file (default: image/debian.lock of this checkout).
    #[arg(long)]
    pub lock: Option<PathBuf>,
    /// The enclave binary (default: kokon-enclave beside this program).
    #[arg(long)]
    pub enclave: Option<PathBuf>,
    /// The guest's init (default: kokon-init beside this program).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// The magika model (default $KOKON_MODEL); its package's configuration files come along.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A text model directory (from scripts/llm/gguf_to_onnx.py) to serve
    /// behind the OpenAI API too. It goes on the image's data disk
    /// (data.img, under dm-verity, its root hash on the measured command
    /// line), not into the initramfs.
    #[arg(long, value_name = "DIR")]
    pub llm: Option<PathBuf>,
    /// Boot SEV-SNP guests with this firmware instead of Debian's
    /// ovmf-amdsev build: an operator's own OVMF from edk2's
    /// OvmfPkg/AmdSev/AmdSevX64.dsc (it must reserve the kernel-hashes table).
    #[arg(long, value_name = "FILE")]
    pub snp_firmware: Option<PathBuf>,
    /// Build a GPU image: NVIDIA's driver from the lock's [gpu] pins, its
    /// kernel modules compiled for the pinned kernel in a pinned build root
    /// (needs unshare and user namespaces), its libraries in the initramfs
    /// and its GSP firmware on the data disk (docs/image.md).
    #[arg(long)]
    pub gpu: bool,
    /// The VM's vCPUs (measured: SEV-SNP has one VMSA per vCPU).
    #[arg(long, default_value_t = 2)]
    pub vcpus: u32,
    /// The VM's memory in MiB.
    #[arg(long, default_value_t = 2048)]
    pub memory_mib: u64,
    /// The vCPU type an SEV-SNP VM runs with (measured in its VMSAs).
    #[arg(long, default_value = "EPYC-v4")]
    pub snp_vcpu_type: String,
    /// Price of one inference in nanotons (measured, in the serving configuration).
    #[arg(long, default_value_t = 0)]
    pub price_nanoton_per_unit: u128,
    /// With --llm: price of one prompt token in nanotons (measured).
    #[arg(long, default_value_t = 0, requires = "llm")]
    pub price_nanoton_per_prompt_token: u128,
    /// With --llm: price of one completion token in nanotons (measured).
    #[arg(long, default_value_t = 0, requires = "llm")]
    pub price_nanoton_per_completion_token: u128,
}

/// `kokon audit ...`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// The measurements a TEE takes of a guest image, recomputed from its files.
    Measure {
        /// The image directory (from `kokon image build`).
        #[arg(long)]
        image: PathBuf,
        /// Which TEE's measurements: snp or tdx.
        #[arg(long)]
        tee: String,
        /// vCPUs (default: the image manifest's VM shape).
        #[arg(long)]
        vcpus: Option<u32>,
        /// SEV-SNP vCPU type (default: the manifest's).
        #[arg(long)]
        vcpu_type: Option<String>,
        /// Print only the policy's `[measurements]` table.
        #[arg(long)]
        policy_snippet: bool,
        /// With --policy-snippet: print this policy file with its `[measurements]` table replaced.
        #[arg(long, requires = "policy_snippet", value_name = "POLICY")]
        into: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a TDX event log (CCEL), print each event, and compare with a quote's RTMRs.
    Eventlog {
        /// The event log (the CCEL table's log area, e.g. /sys/firmware/acpi/tables/data/CCEL).
        log: PathBuf,
        /// A quote of the same TD: exit 2 unless the replay reproduces its RTMR0-2.
        #[arg(long)]
        quote: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every field of a TDX quote, SNP report or attestation bundle with its meaning.
    Explain {
        /// The quote, report (binary or hex), NVIDIA GPU report (hex) or bundle (JSON).
        file: PathBuf,
        /// Format, when not detected: tdx-quote, snp-report or nvidia-report.
        #[arg(long)]
        format: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `kokon host`: where to listen, which enclave to launch, its limits.
/// Every flag can also come from `--config FILE` (TOML, the flags' names
/// with `_` or `-`); flags on the command line win.
#[derive(clap::Parser, Clone)]
#[command(args_override_self = true)]
pub struct HostArgs {
    /// A TOML file of flags (`listen = "0.0.0.0:8443"`, `tee = "tdx"`,
    /// `price_nanoton_per_unit = 1000`, `enclave_cpus = "2-3"`, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ONNX Runtime's shared library (default: what `just setup` installed).
    #[arg(long, value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// Address to listen on in plain HTTP (keep it on loopback, or behind a
    /// TLS-terminating proxy).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Serve `/metrics` on this address only (not beside the public
    /// routes): for a scraper on a private network.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve HTTPS on this address, with --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain (PEM, leaf first), read again when it changes.
    #[arg(long, requires = "tls_listen")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM), read again when it changes.
    #[arg(long, requires = "tls_listen")]
    pub tls_key: Option<PathBuf>,
    /// Evidence backend of the enclave: sim, tdx, snp or auto for the
    /// process backend; tdx, snp or none (development) for the VM.
    #[arg(long, default_value = "sim")]
    pub tee: String,
    /// How the enclave runs: `process` (a child process, development) or
    /// `qemu` (inside the worker VM, from --image).
    #[arg(long, default_value = "process")]
    pub backend: String,
    /// The guest image for --backend qemu (from `kokon image build`).
    #[arg(long, value_name = "DIR")]
    pub image: Option<PathBuf>,
    /// A GPU to pass through to the VM (PCI address, bound to vfio-pci); repeatable.
    #[arg(long = "gpu", value_name = "PCI_BDF")]
    pub gpus: Vec<String>,
    /// qemu-system-x86_64 (default: from PATH).
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// For --tee none: `kvm` or `tcg` (default: KVM when /dev/kvm opens and KVM runs the image's firmware, TCG otherwise).
    #[arg(long)]
    pub accel: Option<String>,
    /// Inference device (cpu or cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// With --device cuda: `confidential` (the enclave refuses GPUs not in
    /// confidential-computing mode) or `development` (it serves on them,
    /// and its measured serving configuration says so).
    #[arg(long, default_value = "confidential")]
    pub gpu_mode: String,
    /// The ONNX model (default $KOKON_MODEL).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The model's served name.
    #[arg(long, default_value = "magika")]
    pub model_name: String,
    /// Largest request body in bytes (the default fits a 1x3x224x224 FP32
    /// image as JSON or binary tensor data; at most 16 MiB less 16 bytes).
    #[arg(long, default_value_t = kokon_host::DEFAULT_MAX_BODY_BYTES)]
    pub max_body: usize,
    /// Requests relayed at once.
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: usize,
    /// Seconds allowed per request, once its body has arrived.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Seconds a client has to send a request body (every route).
    #[arg(long, default_value_t = 10)]
    pub body_timeout: u64,
    /// Attestations relayed at once (apart from inference).
    #[arg(long, default_value_t = 4)]
    pub max_attestations: usize,
    /// Attestations started per second (bursts up to as many).
    #[arg(long, default_value_t = 50)]
    pub attestations_per_second: u32,
    /// Open connections per peer address (0: no limit; behind a reverse proxy, raise it).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_peer: usize,
    /// Pin the enclave to these CPUs (comma-separated), as a TEE VM's dedicated vCPUs.
    #[arg(long)]
    pub enclave_cpus: Option<String>,
    /// Most rows in one model run merging concurrent requests (the
    /// enclave's `--batch-max-rows`; default: its `--max-batch`, 64).
    #[arg(long)]
    pub batch_max_rows: Option<usize>,
    /// Longest a request waits for others to merge with, in microseconds
    /// (the enclave's `--batch-delay-us`; default 500, 0: no wait).
    #[arg(long)]
    pub batch_delay_us: Option<u64>,
    /// Where hardware TEEs' collateral comes from.
    #[command(flatten)]
    pub sources: CollateralSources,
    /// Bill requests to the payment channels in this TOML file (see docs/billing.md).
    #[arg(long)]
    pub channels: Option<PathBuf>,
    /// Price of one inference in nanotons (the enclave's receipts charge it).
    #[arg(long, default_value_t = 0)]
    pub price_nanoton_per_unit: u128,
    /// Also serve this text model (a directory from `just setup`, e.g.
    /// .cache/models/smollm2-135m-instruct) behind the OpenAI API.
    #[arg(long)]
    pub llm: Option<PathBuf>,
    /// Price of one prompt token in nanotons.
    #[arg(long, default_value_t = 0)]
    pub price_nanoton_per_prompt_token: u128,
    /// Price of one completion token in nanotons.
    #[arg(long, default_value_t = 0)]
    pub price_nanoton_per_completion_token: u128,
    /// Host tools instead of running the host.
    #[command(subcommand)]
    pub action: Option<HostAction>,
}

/// Where the vendors' collateral is fetched from: Intel PCS (or a PCCS),
/// AMD KDS, NVIDIA's OCSP responder and RIM service (`kokon host`, `kokon
/// verify --fetch-collateral`).
#[derive(clap::Args, Clone, Debug)]
pub struct CollateralSources {
    /// Intel PCS or PCCS base URL for TDX collateral (API v4 paths are appended).
    #[arg(long, env = "KOKON_PCS_URL", default_value = kokon_host::collateral::INTEL_PCS)]
    pub pcs_url: String,
    /// URL of the Intel SGX Root CA CRL.
    #[arg(long, env = "KOKON_ROOT_CRL_URL", default_value = kokon_host::collateral::INTEL_ROOT_CRL)]
    pub root_crl_url: String,
    /// AMD KDS base URL for VCEKs, their chains and CRLs.
    #[arg(long, env = "KOKON_KDS_URL", default_value = kokon_host::collateral::AMD_KDS)]
    pub kds_url: String,
    /// SEV-SNP product line (milan, genoa, turin) for reports that do not name it.
    #[arg(long)]
    pub snp_product: Option<String>,
    /// NVIDIA's OCSP responder, asked about GPU and RIM certificate chains.
    #[arg(long, env = "KOKON_NVIDIA_OCSP_URL", default_value = kokon_host::collateral::NVIDIA_OCSP)]
    pub nvidia_ocsp_url: String,
    /// NVIDIA's RIM service base URL, asked for GPU drivers' and VBIOSes' reference values.
    #[arg(long, env = "KOKON_NVIDIA_RIM_URL", default_value = kokon_host::collateral::NVIDIA_RIM_SERVICE)]
    pub nvidia_rim_url: String,
}

impl CollateralSources {
    /// The collateral service's configuration, cached under `cache_dir` (or
    /// in memory only).
    pub fn config(
        &self,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<kokon_host::collateral::CollateralConfig> {
        use anyhow::Context;
        Ok(kokon_host::collateral::CollateralConfig {
            pcs_url: self.pcs_url.clone(),
            root_crl_url: self.root_crl_url.clone(),
            kds_url: self.kds_url.clone(),
            snp_product: self
                .snp_product
                .as_deref()
                .map(|p| serde_json::from_value(serde_json::Value::String(p.into())))
                .transpose()
                .context("--snp-product: expected milan, genoa or turin")?,
            nvidia_ocsp_url: self.nvidia_ocsp_url.clone(),
            nvidia_rim_url: self.nvidia_rim_url.clone(),
            cache_dir,
        })
    }
}

/// `kokon host ...`: host tools.
#[derive(Subcommand, Clone)]
pub enum HostAction {
    /// Claim what the channels owe: start an uncooperative close on each
    /// channel's newest voucher (from the host's v5r1 wallet), or finish
    /// them after the quarantine.
    Settle {
        /// The channels file (with host_key_file and each channel's address).
        #[arg(long)]
        channels: PathBuf,
        /// The network file.
        #[arg(long)]
        network: PathBuf,
        /// Finish closes whose quarantine has passed.
        #[arg(long)]
        finish: bool,
    },
}

/// The arguments of `kokon verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A saved attestation bundle.
    #[arg(
        long,
        conflicts_with = "evidence",
        required_unless_present = "evidence"
    )]
    pub bundle: Option<PathBuf>,
    /// A raw TDX quote, SNP report or NVIDIA GPU attestation report (binary or hex).
    #[arg(long)]
    pub evidence: Option<PathBuf>,
    /// Format of --evidence when it is not detected: tdx-quote, snp-report or nvidia-report.
    #[arg(long, requires = "evidence")]
    pub format: Option<String>,
    /// NVIDIA GPU report: its certificate chain (PEM, leaf first, ending in
    /// NVIDIA's Device Identity CA, which must be the embedded one).
    #[arg(long, requires = "evidence")]
    pub gpu_chain: Option<PathBuf>,
    /// NVIDIA GPU report: the nonce (64 hex digits) its request must carry;
    /// without it the report's freshness is not checked, and said so.
    #[arg(long, requires = "gpu_chain")]
    pub gpu_nonce: Option<String>,
    /// NVIDIA GPU report: NVIDIA's OCSP answers (DER) for the chain's
    /// device identity, provisioner and architecture certificates, in that
    /// order (three files), checked at --at.
    #[arg(long, requires = "gpu_chain")]
    pub gpu_ocsp: Vec<PathBuf>,
    /// NVIDIA GPU report: the RIMs of its driver and of its VBIOS (two
    /// files: the signed XML, or the RIM service's JSON answer), verified
    /// under the embedded NVIDIA CoRIM signing root at --at and compared
    /// with the report's measurements.
    #[arg(long, requires = "gpu_chain")]
    pub gpu_rim: Vec<PathBuf>,
    /// TDX collateral: a directory of Intel PCS responses as curl saves them
    /// (tcb_info.json, qe_identity.json, pck_crl.der, root_ca_crl.der, and
    /// the .headers of the first three; see docs/attestation.md), or one
    /// JSON file with dcap-qvl's QuoteCollateralV3 fields.
    #[arg(long, requires = "evidence", conflicts_with = "fetch_collateral")]
    pub collateral: Option<PathBuf>,
    /// Fetch what the evidence needs from the vendors (--pcs-url, --kds-url):
    /// TDX collateral from Intel PCS; the SNP VCEK chain and AMD's CRL from
    /// AMD KDS. Then verify, at --at, as if it had been given.
    #[arg(long, requires = "evidence")]
    pub fetch_collateral: bool,
    /// Where --fetch-collateral fetches from.
    #[command(flatten)]
    pub sources: CollateralSources,
    /// SNP: the VCEK or VLEK certificate (DER or PEM).
    #[arg(long, requires = "evidence")]
    pub vcek: Option<PathBuf>,
    /// SNP: its CA chain (ASK or ASVK, then ARK; PEM); default the embedded ASK.
    #[arg(long, requires = "evidence")]
    pub chain: Option<PathBuf>,
    /// SNP: AMD's CRL for the product line (DER or PEM, from KDS .../crl).
    #[arg(long, requires = "evidence")]
    pub crl: Option<PathBuf>,
    /// The policy file (required with --bundle).
    #[arg(long, required_unless_present = "evidence")]
    pub policy: Option<PathBuf>,
    /// Verification time (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// With --bundle: also write the verification report here as a
    /// self-contained HTML page (written for a rejected bundle too).
    #[arg(long, value_name = "FILE.html", conflicts_with = "evidence")]
    pub report: Option<PathBuf>,
}

/// How `kokon infer --input` tensors travel (`--tensor-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TensorEncoding {
    /// KServe's binary tensor data extension: raw bytes after a JSON header.
    Binary,
    /// JSON numbers.
    Json,
}

/// The arguments of `kokon infer`.
#[derive(clap::Args)]
pub struct InferArgs {
    /// The host's base URL.
    #[arg(long)]
    pub host: String,
    /// The policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// Model name.
    #[arg(long, default_value = "magika")]
    pub model: String,
    /// The file to classify (with the magika model).
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    pub file: Option<PathBuf>,
    /// An input tensor from a file, for any model (repeat for each input;
    /// the outputs are printed as JSON). NAME=FILE: FILE is a KServe input
    /// object in JSON, `{"shape": [1, 3], "datatype": "FP32", "data": [0.5,
    /// 1, 2]}`. NAME=FILE:DATATYPE:SHAPE: FILE holds the raw elements,
    /// row-major and little-endian, e.g. `image=cat.f32:FP32:1x3x224x224`.
    #[arg(long, value_name = "NAME=FILE[:DATATYPE:SHAPE]")]
    pub input: Vec<String>,
    /// How --input tensors travel, and the outputs come back: binary
    /// (KServe's binary tensor data extension) or json (JSON numbers).
    #[arg(long, value_enum, default_value_t = TensorEncoding::Binary)]
    pub tensor_encoding: TensorEncoding,
    /// Bill it to this payment channel (a `kokon channel open` file) and pay.
    #[arg(long)]
    pub channel: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `kokon proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Where to serve the OpenAI API in plain HTTP (keep it on loopback:
    /// what crosses it is plaintext).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The kokon host's base URL.
    #[arg(long)]
    pub host: String,
    /// The policy the enclave must satisfy.
    #[arg(long)]
    pub policy: PathBuf,
    /// Bill requests to this payment channel (a `kokon channel open` file)
    /// and pay each verified receipt.
    #[arg(long)]
    pub channel: Option<PathBuf>,
    /// Attest again when the evidence is older than this many seconds.
    #[arg(long, default_value_t = 300)]
    pub max_evidence_age: u64,
}

/// `kokon chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The host's base URL.
    #[arg(long)]
    pub host: String,
    /// The policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// The text model's name (default: the one the enclave attests).
    #[arg(long)]
    pub model: Option<String>,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u64,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bill the answers to this payment channel (a `kokon channel open`
    /// file) and pay each verified receipt.
    #[arg(long)]
    pub channel: Option<PathBuf>,
    /// The prompt; without one, read prompts from standard input, one per
    /// line, keeping the conversation.
    pub prompt: Option<String>,
}
