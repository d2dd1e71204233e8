//! Test harness for kokon's end-to-end tests and benchmarks: locates the
//! run-time dependencies installed by `just setup` and the built binaries,
//! and starts a host with its enclave on loopback in a private data directory.

#![warn(missing_docs)]

pub mod attack;
pub mod gpu;
pub mod pcs;
pub mod soak;
pub mod text;
pub mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kokon_client::magika::Magika;
use kokon_client::{Client, VerifiedEnclave};
use kokon_host::{EnclaveCommand, HostConfig, Limits, RunningHost};
use kokon_policies::{LocalReferences, Policy};
use kokon_wire::kserve::{InferInput, InferRequest};

/// The development policy shipped in `policies/`.
pub const DEV_POLICY: &str = include_str!("../../policies/dev-sim.toml");
/// The production TDX policy shipped in `policies/`.
pub const PRODUCTION_POLICY: &str = include_str!("../../policies/production-tdx.toml");

/// Paths to everything the tests run.
#[derive(Debug, Clone)]
pub struct Env {
    /// ONNX Runtime shared library.
    pub ort_lib: PathBuf,
    /// The magika ONNX model.
    pub model: PathBuf,
    /// The installed magika Python package.
    pub magika_dir: PathBuf,
    /// Python of the venv that has magika.
    pub python: PathBuf,
    /// The default text model's directory (converted by `just setup`).
    pub llm_dir: PathBuf,
    /// The GGUF it was converted from.
    pub llm_gguf: PathBuf,
    /// The built `kokon-enclave`.
    pub enclave_bin: PathBuf,
    /// The built `kokon`.
    pub kokon_bin: PathBuf,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Env {
    /// Reads `.cache/kokon.env` (written by `just setup`) and finds the binaries
    /// in the target directory this test was built into.
    pub fn load() -> Self {
        let env_file = repo_root().join(".cache/kokon.env");
        let text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| {
            panic!(
                "{} unreadable ({e}): run `just setup` (or `just test`)",
                env_file.display()
            )
        });
        let var = |name: &str| -> PathBuf {
            std::env::var_os(name)
                .map(PathBuf::from)
                .or_else(|| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(PathBuf::from))
                })
                .unwrap_or_else(|| panic!("{name} missing from {}", env_file.display()))
        };
        let exe = std::env::current_exe().unwrap_or_default();
        let profile_dir = exe
            .ancestors()
            .find(|p| {
                p.join("kokon-enclave").is_file()
                    || p.file_name()
                        .is_some_and(|n| n == "debug" || n == "release")
            })
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let bin = |name: &str| {
            let p = profile_dir.join(name);
            assert!(
                p.is_file(),
                "{} not built: run `cargo build --bins` first (`just test` does)",
                p.display()
            );
            p
        };
        Self {
            ort_lib: var("KOKON_ORT_LIB"),
            model: var("KOKON_MODEL"),
            magika_dir: var("KOKON_MAGIKA_DIR"),
            python: var("KOKON_PYTHON"),
            llm_dir: var("KOKON_LLM_DIR"),
            llm_gguf: var("KOKON_LLM_GGUF"),
            enclave_bin: bin("kokon-enclave"),
            kokon_bin: bin("kokon"),
        }
    }

    /// Magika's configuration.
    pub fn magika(&self) -> Magika {
        Magika::load(&self.magika_dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The sim root in `data_dir` and the built enclave's MRTD, for policies.
    pub fn local_references(&self, data_dir: &Path) -> LocalReferences {
        let sim = data_dir
            .join(kokon_attestation::sim::SIM_ROOT_DIR)
            .join(kokon_attestation::sim::SIM_ROOT_CERT_FILE);
        let der = std::fs::read(&sim).unwrap_or_else(|e| panic!("{}: {e}", sim.display()));
        LocalReferences {
            sim_root: Some(kokon_attestation::sim::anchor(der)),
            enclave_build_mrtd: Some(self.enclave_mrtd()),
        }
    }

    /// Magika's feature row for `content`, which must be long enough for
    /// the model to be asked (not decided by Magika's rules alone).
    pub fn feature_row(&self, content: &[u8]) -> Vec<i32> {
        match self.magika().prepare(content) {
            kokon_client::magika::Prepared::Features(row) => row,
            kokon_client::magika::Prepared::Decided(_) => {
                panic!("sample of {} bytes too small for the model", content.len())
            }
        }
    }

    /// Runs the set-up's Python with `args` and returns its standard
    /// output; fails the test, with its standard error, when it fails.
    pub fn python_ok<I, S>(&self, args: I) -> Vec<u8>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = std::process::Command::new(&self.python)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.python.display()));
        assert!(
            out.status.success(),
            "{} failed: {}",
            self.python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// SHA-384 of the enclave binary: its sim MRTD.
    pub fn enclave_mrtd(&self) -> [u8; 48] {
        kokon_attestation::sim::mr_td_of(&std::fs::read(&self.enclave_bin).unwrap_or_default())
    }
}

/// Environment variable that tags every process a test starts (hosts run
/// as processes, enclaves, and whatever they start), so that the harness can
/// find those left behind: see [`assert_no_leftovers`].
pub const TEST_TAG_ENV: &str = "KOKON_TEST_TAG";

/// How long [`assert_no_leftovers`] waits for tagged processes to go.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(3);

/// A tag unique to this test (named after it), this test binary and this
/// call, for [`TEST_TAG_ENV`].
pub fn test_tag() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let thread = std::thread::current();
    let name: String = thread
        .name()
        .unwrap_or("test")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{name}-{}-{n}", std::process::id())
}

/// The processes (pid and command line) whose environment carries
/// `TEST_TAG_ENV=tag`, other than this one. Zombies, whose environment is
/// gone, are not counted.
pub fn tagged_processes(tag: &str) -> Vec<(u32, String)> {
    let needle = format!("{TEST_TAG_ENV}={tag}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmdline.trim().to_string()));
        }
    }
    found
}

/// Waits up to `grace` for every process tagged `tag` to go; returns those
/// still there.
pub fn leftovers_after(tag: &str, grace: Duration) -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + grace;
    loop {
        let left = tagged_processes(tag);
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fails the test, naming them, when processes tagged `tag` are still
/// running [`LEFTOVER_GRACE`] after the test stopped what it started.
/// Blocks the calling thread while it waits.
pub fn assert_no_leftovers(tag: &str) {
    let left = leftovers_after(tag, LEFTOVER_GRACE);
    assert!(
        left.is_empty(),
        "processes left behind (tag {tag}), still running {LEFTOVER_GRACE:?} after the test stopped them:\n{}",
        left.iter()
            .map(|(pid, cmd)| format!("  pid {pid}: {cmd}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Options for a test stack.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment for the enclave process.
    pub enclave_env: Vec<(String, String)>,
    /// Host limits (defaults when `None`).
    pub limits: Option<Limits>,
    /// Extra arguments for the enclave.
    pub enclave_args: Vec<String>,
    /// Payment channels the host bills (none: free).
    pub ledger: Option<kokon_host::ledger::LedgerConfig>,
    /// TLS the host also serves (none: plain HTTP only).
    pub tls: Option<kokon_host::tls::TlsConfig>,
    /// Serve `/metrics` apart, on this address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The ONNX model the enclave serves and its name (none: magika).
    pub model: Option<(PathBuf, String)>,
}

/// A host and its enclave on loopback, with a client.
pub struct Stack {
    /// The running host.
    pub host: RunningHost,
    /// Private data directory (holds this stack's sim root).
    pub data: tempfile::TempDir,
    /// The host's base URL.
    pub base: String,
    /// A client for it.
    pub client: Client,
    /// Paths.
    pub env: Env,
    /// The [`TEST_TAG_ENV`] tag of this stack's enclave.
    pub tag: String,
}

impl Stack {
    /// Starts a host (which launches the enclave) and waits until it serves.
    pub async fn start(options: Options) -> Self {
        let env = Env::load();
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let tag = test_tag();
        let p = |p: &Path| p.display().to_string();
        let (model, model_name) = options
            .model
            .clone()
            .unwrap_or_else(|| (env.model.clone(), "magika".into()));
        let config = HostConfig {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            enclave: EnclaveCommand {
                program: env.enclave_bin.clone(),
                args: vec![
                    "--tee".into(),
                    "sim".into(),
                    "--model".into(),
                    p(&model),
                    "--model-name".into(),
                    model_name,
                    "--ort-lib".into(),
                    p(&env.ort_lib),
                    "--data-dir".into(),
                    p(data.path()),
                ]
                .into_iter()
                .chain(options.enclave_args.clone())
                .collect(),
                env: options
                    .enclave_env
                    .iter()
                    .cloned()
                    .chain([(TEST_TAG_ENV.to_string(), tag.clone())])
                    .collect(),
                socket: data.path().join("enclave.sock"),
                startup_timeout: Duration::from_secs(60),
            }
            .into(),
            limits: options.limits.unwrap_or_default(),
            collateral: None,
            ledger: options.ledger.clone(),
            tls: options.tls.clone(),
            metrics_listen: options.metrics_listen,
        };
        let host = kokon_host::start(config)
            .await
            .unwrap_or_else(|e| panic!("host: {e}"));
        host.wait_ready(Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let base = format!("http://{}", host.addr);
        Self {
            client: Client::new(&base),
            host,
            data,
            base,
            env,
            tag,
        }
    }

    /// A policy from TOML text with this stack's sim root and enclave binary as local references.
    pub fn policy(&self, text: &str) -> Policy {
        Self::policy_for(&self.env, self.data.path(), text)
    }

    /// A policy from TOML text with the sim root in `data_dir` and the built
    /// enclave binary as local references (for hosts run as processes).
    pub fn policy_for(env: &Env, data_dir: &Path, text: &str) -> Policy {
        Policy::from_toml(text, &env.local_references(data_dir))
            .unwrap_or_else(|e| panic!("policy: {e}"))
    }

    /// The shipped development policy for this stack.
    pub fn dev_policy(&self) -> Policy {
        self.policy(DEV_POLICY)
    }

    /// Attests the enclave under the development policy.
    pub async fn attest(&self) -> VerifiedEnclave {
        self.client
            .attest(&self.dev_policy())
            .await
            .unwrap_or_else(|e| panic!("attestation: {e}"))
    }

    /// Kills the enclave (SIGKILL) and waits until the host restarted it:
    /// the new enclave holds new keys.
    pub async fn restart_enclave(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let state = &self.host.state;
        let (pid, restarts) = (state.pid.load(Relaxed), state.restarts.load(Relaxed));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap_or_else(|e| panic!("killing the enclave {pid}: {e}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while state.restarts.load(Relaxed) == restarts || !state.up.load(Relaxed) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the host did not restart its enclave"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.host
            .wait_ready(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops host and enclave, and fails the test if the enclave (or
    /// anything it started) is still running shortly after. A stack dropped
    /// without this (a test that panicked) still takes its enclave down:
    /// the supervisor kills it on drop, and its lifeline closes.
    pub async fn shutdown(self) {
        self.host.shutdown().await;
        let tag = self.tag;
        tokio::task::spawn_blocking(move || assert_no_leftovers(&tag))
            .await
            .unwrap_or_else(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("leftover check: {e}"),
            });
    }
}

/// A TCP port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A payment channel for a billing host's ledger: `id`, the client's
/// channel `key`, its deposit and the host's credit limit (nanotons).
pub fn channel_config(
    id: u128,
    key: &ed25519_dalek::SigningKey,
    deposit: u128,
    credit_limit: u128,
) -> kokon_host::ledger::ChannelConfig {
    kokon_host::ledger::ChannelConfig {
        id: id.to_string(),
        client_key: hex::encode(key.verifying_key().to_bytes()),
        deposit: deposit.to_string(),
        credit_limit: credit_limit.to_string(),
        address: None,
    }
}

/// Claims with placeholder keys, models and digests, issued at `issued_at`,
/// for tests that need a bundle's shape rather than a real enclave's.
pub fn placeholder_claims(issued_at: i64) -> kokon_attestation::Claims {
    kokon_attestation::Claims {
        kokon_version: "0.1.0".into(),
        ohttp_key_config: vec![1],
        receipt_key: [1; 32],
        model_name: "m".into(),
        model_digest: [2; 32],
        text_model: None,
        config_digest: [3; 32],
        runtime: "cpu".into(),
        nonce: vec![4; 32],
        issued_at,
        gpus: Vec::new(),
        gpu_cc: None,
    }
}

/// A fresh kokon data directory (`KOKON_DATA_DIR`) holding a sim root of
/// its own, as one `kokon host --tee sim` leaves: what the `sim-local`
/// root of a policy is read from, so that no test depends on this
/// machine's.
pub fn sim_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let root = kokon_attestation::sim::SimRoot::generate(kokon_client::unix_now())
        .unwrap_or_else(|e| panic!("sim root: {e}"));
    let file = dir
        .path()
        .join(kokon_attestation::sim::SIM_ROOT_DIR)
        .join(kokon_attestation::sim::SIM_ROOT_CERT_FILE);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
    std::fs::write(&file, root.cert_der()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    dir
}

/// A KServe request for magika with the given rows, as the SDK makes it
/// ([`kokon_client::magika::request`]): the rows in binary, the scores
/// asked for in binary. Seal it with
/// [`kokon_client::VerifiedEnclave::seal_infer`] (not as a JSON body).
pub fn magika_request(rows: &[Vec<i32>]) -> InferRequest {
    kokon_client::magika::request(rows)
}

/// Writes `max.onnx` into `dir`, a model that does next to nothing, for
/// measuring the confidential path apart from inference: input `x` INT32
/// `[N, 2048]` (magika's row width), output `y` INT32 `[N]`, each row's
/// maximum (one ReduceMax). Generated with the `onnx` package of the
/// project's venv; served as [`TRIVIAL_MODEL`].
pub fn trivial_model(env: &Env, dir: &Path) -> PathBuf {
    let path = dir.join("max.onnx");
    let script = r#"
import sys, onnx
from onnx import helper, TensorProto
x = helper.make_tensor_value_info("x", TensorProto.INT32, ["N", 2048])
y = helper.make_tensor_value_info("y", TensorProto.INT32, ["N"])
nodes = [helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=0)]
graph = helper.make_graph(nodes, "kokon_trivial", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kokon-tests")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
"#;
    env.python_ok([std::ffi::OsStr::new("-c"), script.as_ref(), path.as_ref()]);
    path
}

/// The name [`trivial_model`] is served under.
pub const TRIVIAL_MODEL: &str = "max";

/// A request for [`trivial_model`]: one `row` (2048 long), binary in and out.
pub fn trivial_request(row: &[i32]) -> InferRequest {
    InferRequest {
        inputs: vec![InferInput::int32("x", vec![1, 2048], row)],
        binary_output: true,
        ..InferRequest::default()
    }
}

/// The development policy, also allowing the model `name` whose file is
/// `path` (by its SHA-256).
pub fn dev_policy_allowing(name: &str, path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    format!("{DEV_POLICY}\n[[models.allowed]]\nname = \"{name}\"\ndigest = \"{digest}\"\n")
}

/// A KServe request for magika with the given rows as JSON numbers, the
/// scores asked for as JSON: what an external KServe client without the
/// binary tensor data extension sends. Its `serde_json` form is its body.
pub fn magika_request_json(rows: &[Vec<i32>]) -> InferRequest {
    let width = rows.first().map(Vec::len).unwrap_or(0);
    let flat: Vec<i32> = rows.iter().flatten().copied().collect();
    InferRequest {
        id: None,
        inputs: vec![InferInput::int32_json(
            "bytes",
            vec![rows.len() as i64, width as i64],
            &flat,
        )],
        outputs: None,
        binary_output: false,
        parameters: None,
    }
}

/// Sends `req` on loopback: the status, the content type and the whole
/// body, or `None` when nothing answers.
async fn exchange(
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Option<(u16, String, Vec<u8>)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Some((status, content_type, body))
}

/// A plain HTTP GET on loopback: status and body, or `None` when nothing answers.
pub async fn try_http_get(base: &str, path: &str) -> Option<(u16, String)> {
    let req = hyper::Request::get(format!("{base}{path}"))
        .body(http_body_util::Full::default())
        .ok()?;
    let (status, _, body) = exchange(req).await?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A plain HTTP POST of `body` as `content_type` on loopback: the status
/// and the whole body.
pub async fn http_post(
    base: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let req = hyper::Request::post(format!("{base}{path}"))
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _, body) = exchange(req)
        .await
        .unwrap_or_else(|| panic!("POST {base}{path}: no answer"));
    (status, body)
}

/// Options for a stack whose enclave serves the text model at these
/// prices per prompt and completion token (nanotons).
pub fn text_options(prompt_price: u128, completion_price: u128) -> Options {
    let env = Env::load();
    Options {
        enclave_args: vec![
            "--llm".into(),
            env.llm_dir.display().to_string(),
            "--price-nanoton-per-prompt-token".into(),
            prompt_price.to_string(),
            "--price-nanoton-per-completion-token".into(),
            completion_price.to_string(),
        ],
        ..Options::default()
    }
}

/// A greedy chat request to the default text model: one user message.
pub fn chat_request(content: &str, max_tokens: u64) -> kokon_wire::openai::ChatCompletionRequest {
    kokon_wire::openai::ChatCompletionRequest {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..kokon_wire::openai::ChatCompletionRequest::new(
            "smollm2-135m-instruct",
            vec![kokon_wire::openai::ChatMessage::text_from("user", content)],
        )
    }
}

/// A plain HTTP GET on loopback with an `Accept` header: the status, the
/// content type and the body.
pub async fn http_get_accepting(base: &str, path: &str, accept: &str) -> (u16, String, String) {
    let req = hyper::Request::get(format!("{base}{path}"))
        .header(hyper::header::ACCEPT, accept)
        .body(http_body_util::Full::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, content_type, body) = exchange(req)
        .await
        .unwrap_or_else(|| panic!("GET {base}{path}: no answer"));
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// What `read` gives once `done` holds of it, or after ten seconds
/// (polled every 100 ms): for effects that land shortly after an answer.
pub async fn poll_until<T, F, Fut>(read: F, done: impl Fn(&T) -> bool) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut value = read().await;
    for _ in 0..100 {
        if done(&value) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        value = read().await;
    }
    value
}

/// A plain HTTP GET on loopback that must be answered.
pub async fn http_get(base: &str, path: &str) -> (u16, String) {
    try_http_get(base, path)
        .await
        .unwrap_or_else(|| panic!("GET {base}{path}: no answer"))
}

/// xorshift64*: a small, reproducible pseudo-random source for property and
/// fault-injection tests (seeded, so a failure can be replayed).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// What headless Chromium made of a page.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The DOM after the page loaded, serialized.
    pub dom: String,
    /// Every console message the page caused: `console.*` calls, uncaught
    /// exceptions, Content-Security-Policy violations. Chromium logs them
    /// all at one level, so none is told apart: a page without scripts
    /// should cause none.
    pub console: Vec<String>,
}

/// Loads the local HTML file `page` in headless Chromium (Debian's
/// `chromium`, which `scripts/setup.sh test` installs; `KOKON_CHROMIUM`
/// names another) and returns its DOM and console messages. Panics, saying
/// how to install it, when there is none.
pub fn render_in_chromium(page: &Path) -> Rendered {
    let browser = std::env::var_os("KOKON_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        })
        .filter(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium not found: run `bash scripts/setup.sh test` (`just test` does) to install Debian's chromium, or set KOKON_CHROMIUM"
            )
        });
    let page = page
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // Output goes to files: a pipe could fill while the test waits.
    let file = |name: &str| {
        let path = profile.path().join(name);
        let f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        (path, f)
    };
    let (dom_path, dom_file) = file("dom.html");
    let (log_path, log_file) = file("chromium.log");
    let mut child = std::process::Command::new(&browser)
        .args([
            "--headless",
            // Tests run as root in CI, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            // Console messages go to the log (stderr) at level 0.
            "--enable-logging=stderr",
            "--log-level=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(dom_file)
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", browser.display()));
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => {
                let _ = child.kill();
                panic!("{} did not finish rendering: {other:?}", browser.display());
            }
        }
    };
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    let stderr = read(&log_path);
    assert!(
        status.success(),
        "{} failed ({status}): {stderr}",
        browser.display()
    );
    Rendered {
        dom: read(&dom_path),
        // `…:INFO:CONSOLE:12] "message", source: file:///… (12)` (older
        // Chromium wrote `CONSOLE(12)`).
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_owned)
            .collect(),
    }
}
