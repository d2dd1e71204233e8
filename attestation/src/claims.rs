//! The enclave's claims and their canonical encoding.
//!
//! The hardware signs 64 bytes of report data; kokon puts SHA-512 of the
//! canonical encoding of [`Claims`] there, so everything the client relies on
//! (keys, model, nonce) is signed by the TEE. The encoding is a fixed field
//! order of length-prefixed values behind a domain separator: no map order,
//! whitespace or number format can make two encodings of the same claims.
//!
//! Before it serves, the enclave extends RTMR3 with an event for its
//! configuration digest, one for its model digest and, when it serves one, one
//! for its text model's digest ([`Claims::rtmr3_events`]). The verifier
//! replays them and requires the result to equal RTMR3, so the claimed models
//! are also the measured ones.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::tdx::Measurement;

/// Domain separator of the claims encoding, version 4 (v1 had no text
/// model, v2 no GPU evidence digests, v3 no GPU confidential-computing
/// state).
pub const CLAIMS_DOMAIN: &[u8] = b"kokon.claims.v4\0";

/// What the enclave asserts about itself, bound into the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// kokon version of the enclave.
    pub kokon_version: String,
    /// The OHTTP key configuration (RFC 9458 section 3) clients seal requests to.
    #[serde(with = "crate::serde_b64")]
    pub ohttp_key_config: Vec<u8>,
    /// Ed25519 public key that signs usage receipts.
    #[serde(with = "crate::serde_hex")]
    pub receipt_key: [u8; 32],
    /// Name the model is served under.
    pub model_name: String,
    /// SHA-256 of the ONNX model file.
    #[serde(with = "crate::serde_hex")]
    pub model_digest: [u8; 32],
    /// The text model served behind the OpenAI API, when there is one.
    #[serde(default)]
    pub text_model: Option<ModelClaim>,
    /// SHA-256 of the enclave's serving configuration ([`ServingConfig`]:
    /// its JSON encoding, fields in their fixed order).
    #[serde(with = "crate::serde_hex")]
    pub config_digest: [u8; 32],
    /// Inference runtime and device, e.g. "onnxruntime 1.31.1 cpu".
    pub runtime: String,
    /// The client's nonce, echoed.
    #[serde(with = "crate::serde_hex")]
    pub nonce: Vec<u8>,
    /// When the evidence was produced (Unix seconds, enclave clock).
    pub issued_at: i64,
    /// The GPU evidence the bundle carries, in its order: the TEE signs
    /// these digests, binding each GPU report and chain to this enclave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuClaim>,
    /// The GPUs' confidential-computing state as NVML reported it when
    /// the evidence was produced; absent when the enclave serves on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_cc: Option<GpuCcState>,
}

/// The confidential-computing state of an enclave's GPUs (NVIDIA Hopper
/// and later), as NVML reports it for the whole system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuCcState {
    /// Whether the confidential-computing feature is on.
    pub cc_feature: bool,
    /// Whether developer-tools mode is on (debuggers and profilers may
    /// read the GPU's memory).
    pub devtools_mode: bool,
    /// The confidential-computing environment.
    pub environment: CcEnvironment,
    /// How several GPUs talk to each other.
    pub multi_gpu_mode: MultiGpuMode,
    /// How many GPUs NVML lists.
    pub gpu_count: u32,
    /// Whether the GPUs accept work (NVML's GPUs-ready state), which the
    /// enclave sets only after its checks and the GPU evidence pass.
    pub ready: bool,
}

/// NVML's confidential-computing environment (`NVML_CC_SYSTEM_ENVIRONMENT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CcEnvironment {
    /// Not available (no confidential computing).
    Unavailable,
    /// NVIDIA's simulation environment.
    Simulation,
    /// Production.
    Production,
}

/// NVML's multi-GPU mode (`NVML_CC_SYSTEM_MULTIGPU_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MultiGpuMode {
    /// No protected multi-GPU mode.
    None,
    /// Protected PCIe: the GPUs of one confidential VM exchange data
    /// over PCIe only, unencrypted between them, isolated from the host.
    ProtectedPcie,
    /// NVLink encryption.
    Nvle,
}

impl CcEnvironment {
    /// NVML's number for it (its canonical encoding too).
    pub fn code(self) -> u8 {
        match self {
            Self::Unavailable => 0,
            Self::Simulation => 1,
            Self::Production => 2,
        }
    }

    /// Its name, as JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Simulation => "simulation",
            Self::Production => "production",
        }
    }
}

impl MultiGpuMode {
    /// NVML's number for it (its canonical encoding too).
    pub fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::ProtectedPcie => 1,
            Self::Nvle => 2,
        }
    }

    /// Its name, as JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ProtectedPcie => "protected-pcie",
            Self::Nvle => "nvle",
        }
    }
}

/// What a word says about an on/off state, for descriptions.
fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

impl GpuCcState {
    /// What keeps the GPUs from confidential computing, each in a phrase:
    /// the feature off, developer-tools mode on, several GPUs not in
    /// protected PCIe mode. Empty when nothing does. (Readiness and the
    /// environment are not judged here.)
    pub fn shortfalls(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.cc_feature {
            out.push("the CC feature is off");
        }
        if self.devtools_mode {
            out.push("developer-tools mode is on");
        }
        if self.gpu_count > 1 && self.multi_gpu_mode != MultiGpuMode::ProtectedPcie {
            out.push("several GPUs are not in protected PCIe mode");
        }
        out
    }

    /// The state in one line, e.g. `CC on, devtools off, environment
    /// production, 2 GPUs, multi-GPU mode protected-pcie, ready`.
    pub fn describe(&self) -> String {
        format!(
            "CC {}, devtools {}, environment {}, {} GPU{}, multi-GPU mode {}, {}",
            on_off(self.cc_feature),
            on_off(self.devtools_mode),
            self.environment.name(),
            self.gpu_count,
            if self.gpu_count == 1 { "" } else { "s" },
            self.multi_gpu_mode.name(),
            if self.ready { "ready" } else { "not ready" }
        )
    }
}

/// A GPU's attestation evidence, named by its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuClaim {
    /// SHA-384 of the GPU's report followed by its certificate chain
    /// ([`crate::nvidia::evidence_digest`]).
    #[serde(with = "crate::serde_hex")]
    pub evidence_sha384: [u8; 48],
}

/// A served model: its name and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelClaim {
    /// The name it is served under.
    pub name: String,
    /// Its digest (for a text model, `kokon_llm::TextModel::digest`).
    #[serde(with = "crate::serde_hex")]
    pub digest: [u8; 32],
}

/// The enclave's serving configuration: everything `config_digest` commits
/// to. The enclave extends RTMR3 with its digest before it serves and hands
/// it out in each bundle, where the verifier checks it against the claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    /// kokon version of the enclave.
    pub kokon_version: String,
    /// Name the ONNX model is served under.
    pub model_name: String,
    /// Inference device: `cpu` or `cuda`.
    pub device: String,
    /// Most rows classified in one request (and so in one run).
    pub max_batch: u64,
    /// Most rows in one run merging concurrent requests (dynamic batching).
    pub batch_max_rows: u64,
    /// Longest a request waits for others to merge with (microseconds).
    pub batch_delay_us: u64,
    /// How far a request's timestamp may be from the enclave's clock (seconds).
    pub freshness_window_secs: i64,
    /// Price of one inference (nanotons).
    pub price_nanoton_per_unit: u128,
    /// The files the model's client-side parameters (served with its
    /// metadata, e.g. Magika's processing configuration) were read from.
    pub model_parameter_files: Vec<MeasuredFile>,
    /// The text model's name, when one is served.
    pub text_model_name: Option<String>,
    /// Most text sequences decoded together.
    pub llm_max_batch: u64,
    /// Price of one prompt token (nanotons).
    pub price_nanoton_per_prompt_token: u128,
    /// Price of one completion token (nanotons).
    pub price_nanoton_per_completion_token: u128,
    /// With `device` `cuda`, the GPU mode: `confidential` (the GPUs must
    /// be in confidential-computing mode) or `development` (they need
    /// not); `None` on the CPU.
    pub gpu_mode: Option<String>,
}

/// A file measured into the serving configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredFile {
    /// The key it is served under.
    pub name: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// Each item of [`ServingConfig`] (its JSON key, in the order digested) and
/// what it means, for explanations.
pub const SERVING_CONFIG_ITEMS: [(&str, &str); 14] = [
    ("kokon_version", "kokon version of the enclave"),
    ("model_name", "name the ONNX model is served under"),
    ("device", "inference device (cpu or cuda)"),
    ("max_batch", "most rows classified in one request"),
    (
        "batch_max_rows",
        "most rows in one model run merging concurrent requests (a larger request runs alone)",
    ),
    (
        "batch_delay_us",
        "longest a request waits for others to merge with (microseconds)",
    ),
    (
        "freshness_window_secs",
        "how far a request's timestamp may be from the enclave's clock (seconds)",
    ),
    (
        "price_nanoton_per_unit",
        "price of one inference (nanotons), charged in receipts",
    ),
    (
        "model_parameter_files",
        "the files of the model's client-side parameters (e.g. Magika's configuration), each with its SHA-256",
    ),
    (
        "text_model_name",
        "the text model's name, when one is served",
    ),
    ("llm_max_batch", "most text sequences decoded together"),
    (
        "price_nanoton_per_prompt_token",
        "price of one prompt token (nanotons)",
    ),
    (
        "price_nanoton_per_completion_token",
        "price of one completion token (nanotons)",
    ),
    (
        "gpu_mode",
        "with device cuda, the GPU mode: confidential (GPUs in confidential-computing mode required) or development; null on the CPU",
    ),
];

impl ServingConfig {
    /// Its JSON encoding (fields in declaration order, no whitespace): the
    /// bytes whose SHA-256 is `config_digest`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of [`ServingConfig::encode`].
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// Each item's key, meaning and value, in digest order. A price beyond
    /// what a JSON number holds exactly (2^64 - 1) is a string of its digits.
    pub fn items(&self) -> Vec<(&'static str, &'static str, serde_json::Value)> {
        use serde_json::Value;
        let big =
            |n: u128| u64::try_from(n).map_or_else(|_| Value::from(n.to_string()), Value::from);
        let values = [
            Value::from(self.kokon_version.as_str()),
            Value::from(self.model_name.as_str()),
            Value::from(self.device.as_str()),
            Value::from(self.max_batch),
            Value::from(self.batch_max_rows),
            Value::from(self.batch_delay_us),
            Value::from(self.freshness_window_secs),
            big(self.price_nanoton_per_unit),
            Value::Array(
                self.model_parameter_files
                    .iter()
                    .map(|f| serde_json::json!({"name": f.name, "sha256": f.sha256}))
                    .collect(),
            ),
            self.text_model_name
                .as_deref()
                .map_or(Value::Null, Value::from),
            Value::from(self.llm_max_batch),
            big(self.price_nanoton_per_prompt_token),
            big(self.price_nanoton_per_completion_token),
            self.gpu_mode.as_deref().map_or(Value::Null, Value::from),
        ];
        SERVING_CONFIG_ITEMS
            .iter()
            .zip(values)
            .map(|((key, meaning), value)| (*key, *meaning, value))
            .collect()
    }
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    // Fields are at most a few KiB: the length always fits in u32.
    out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(field);
}

impl Claims {
    /// The canonical encoding that the report data commits to.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.ohttp_key_config.len());
        out.extend_from_slice(CLAIMS_DOMAIN);
        put(&mut out, self.kokon_version.as_bytes());
        put(&mut out, &self.ohttp_key_config);
        put(&mut out, &self.receipt_key);
        put(&mut out, self.model_name.as_bytes());
        put(&mut out, &self.model_digest);
        // Absent and present text models encode differently (a flag byte).
        match &self.text_model {
            None => put(&mut out, &[0]),
            Some(m) => {
                put(&mut out, &[1]);
                put(&mut out, m.name.as_bytes());
                put(&mut out, &m.digest);
            }
        }
        put(&mut out, &self.config_digest);
        put(&mut out, self.runtime.as_bytes());
        put(&mut out, &self.nonce);
        put(&mut out, &self.issued_at.to_be_bytes());
        // The count, then each digest (fixed length).
        put(
            &mut out,
            &u32::try_from(self.gpus.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for gpu in &self.gpus {
            put(&mut out, &gpu.evidence_sha384);
        }
        // Absent and present GPU states encode differently (a flag byte);
        // a present one as its five small values, then the GPU count.
        match &self.gpu_cc {
            None => put(&mut out, &[0]),
            Some(cc) => {
                put(&mut out, &[1]);
                put(
                    &mut out,
                    &[
                        u8::from(cc.cc_feature),
                        u8::from(cc.devtools_mode),
                        cc.environment.code(),
                        cc.multi_gpu_mode.code(),
                        u8::from(cc.ready),
                    ],
                );
                put(&mut out, &cc.gpu_count.to_be_bytes());
            }
        }
        out
    }

    /// The 64 bytes of report data: SHA-512 of the canonical encoding.
    pub fn report_data(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(&Sha512::digest(self.canonical_bytes()));
        out
    }

    /// The RTMR3 event digests for this enclave's configuration and models.
    pub fn rtmr3_events(&self) -> Vec<Measurement> {
        rtmr3_events(
            &self.config_digest,
            &self.model_digest,
            self.text_model.as_ref().map(|m| &m.digest),
        )
    }
}

/// The RTMR3 events for a configuration digest, a model digest and a text
/// model's digest when there is one.
pub fn rtmr3_events(
    config_digest: &[u8; 32],
    model_digest: &[u8; 32],
    text_model_digest: Option<&[u8; 32]>,
) -> Vec<Measurement> {
    let event = |label: &[u8], digest: &[u8; 32]| {
        let mut out = [0u8; 48];
        out.copy_from_slice(
            &Sha384::new()
                .chain_update(label)
                .chain_update(digest)
                .finalize(),
        );
        out
    };
    let mut events = vec![
        event(b"kokon.rtmr3.config.v1\0", config_digest),
        event(b"kokon.rtmr3.model.v1\0", model_digest),
    ];
    events.extend(text_model_digest.map(|d| event(b"kokon.rtmr3.text-model.v1\0", d)));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Claims {
        Claims {
            kokon_version: "0.1.0".into(),
            ohttp_key_config: vec![1, 2, 3],
            receipt_key: [7; 32],
            model_name: "magika".into(),
            model_digest: [9; 32],
            text_model: None,
            config_digest: [3; 32],
            runtime: "onnxruntime cpu".into(),
            nonce: vec![5; 32],
            issued_at: 1_700_000_000,
            gpus: Vec::new(),
            gpu_cc: None,
        }
    }

    #[test]
    fn every_field_changes_the_report_data() {
        let base = sample().report_data();
        let mutations: Vec<fn(&mut Claims)> = vec![
            |c| c.kokon_version.push('x'),
            |c| c.ohttp_key_config.push(0),
            |c| c.receipt_key[0] ^= 1,
            |c| c.model_name.push('x'),
            |c| c.model_digest[0] ^= 1,
            |c| {
                c.text_model = Some(ModelClaim {
                    name: "t".into(),
                    digest: [0; 32],
                })
            },
            |c| c.config_digest[0] ^= 1,
            |c| c.runtime.push('x'),
            |c| c.nonce.push(0),
            |c| c.issued_at += 1,
            |c| {
                c.gpus.push(GpuClaim {
                    evidence_sha384: [0; 48],
                })
            },
            |c| c.gpu_cc = Some(cc_state()),
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut c = sample();
            mutate(&mut c);
            assert_ne!(
                c.report_data(),
                base,
                "mutation {i} did not change the report data"
            );
        }
    }

    #[test]
    fn the_gpu_digests_are_bound_in_order() {
        let gpu = |b: u8| GpuClaim {
            evidence_sha384: [b; 48],
        };
        let mut one = sample();
        one.gpus = vec![gpu(1), gpu(2)];
        let mut swapped = sample();
        swapped.gpus = vec![gpu(2), gpu(1)];
        assert_ne!(one.report_data(), swapped.report_data());
        let mut changed = one.clone();
        changed.gpus[1].evidence_sha384[47] ^= 1;
        assert_ne!(one.report_data(), changed.report_data());
        // The encoding ends in the count and the digests.
        let bytes = one.canonical_bytes();
        assert!(bytes.starts_with(b"kokon.claims.v4\0"));
        let tail = [
            &[0, 0, 0, 4, 0, 0, 0, 2][..],
            &[0, 0, 0, 48],
            &[1; 48],
            &[0, 0, 0, 48],
            &[2; 48],
            // No GPU state.
            &[0, 0, 0, 1, 0],
        ]
        .concat();
        assert!(bytes.ends_with(&tail));
    }

    fn cc_state() -> GpuCcState {
        GpuCcState {
            cc_feature: true,
            devtools_mode: false,
            environment: CcEnvironment::Production,
            multi_gpu_mode: MultiGpuMode::None,
            gpu_count: 1,
            ready: true,
        }
    }

    #[test]
    fn every_field_of_the_gpu_state_changes_the_report_data() {
        let mut base = sample();
        base.gpu_cc = Some(cc_state());
        // Its encoding: flag, the five values, the count.
        assert!(base
            .canonical_bytes()
            .ends_with(&[0, 0, 0, 1, 1, 0, 0, 0, 5, 1, 0, 2, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]));
        let mutations: Vec<fn(&mut GpuCcState)> = vec![
            |s| s.cc_feature = false,
            |s| s.devtools_mode = true,
            |s| s.environment = CcEnvironment::Simulation,
            |s| s.multi_gpu_mode = MultiGpuMode::ProtectedPcie,
            |s| s.gpu_count = 2,
            |s| s.ready = false,
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut c = base.clone();
            if let Some(s) = c.gpu_cc.as_mut() {
                mutate(s);
            }
            assert_ne!(c.report_data(), base.report_data(), "mutation {i}");
        }
    }

    #[test]
    fn the_gpu_state_names_what_falls_short_of_confidential_computing() {
        assert!(cc_state().shortfalls().is_empty());
        assert_eq!(
            cc_state().describe(),
            "CC on, devtools off, environment production, 1 GPU, multi-GPU mode none, ready"
        );
        let off = GpuCcState {
            cc_feature: false,
            devtools_mode: true,
            gpu_count: 2,
            ready: false,
            ..cc_state()
        };
        assert_eq!(
            off.shortfalls(),
            [
                "the CC feature is off",
                "developer-tools mode is on",
                "several GPUs are not in protected PCIe mode"
            ]
        );
        assert_eq!(
            off.describe(),
            "CC off, devtools on, environment production, 2 GPUs, multi-GPU mode none, not ready"
        );
        let two = GpuCcState {
            gpu_count: 2,
            multi_gpu_mode: MultiGpuMode::ProtectedPcie,
            ..cc_state()
        };
        assert!(two.shortfalls().is_empty());
        // JSON names the enums as describe() does.
        let json = serde_json::to_string(&two).unwrap_or_default();
        assert!(json.contains("\"environment\":\"production\""), "{json}");
        assert!(
            json.contains("\"multi_gpu_mode\":\"protected-pcie\""),
            "{json}"
        );
    }

    #[test]
    fn length_prefixes_prevent_field_shifting() {
        let mut a = sample();
        let mut b = sample();
        a.model_name = "ab".into();
        a.runtime = "c".into();
        b.model_name = "a".into();
        b.runtime = "bc".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }

    fn serving_config() -> ServingConfig {
        ServingConfig {
            kokon_version: "0.1.0".into(),
            model_name: "magika".into(),
            device: "cpu".into(),
            max_batch: 64,
            batch_max_rows: 32,
            batch_delay_us: 500,
            freshness_window_secs: 300,
            price_nanoton_per_unit: 1000,
            model_parameter_files: vec![MeasuredFile {
                name: "magika.config".into(),
                sha256: "ab".repeat(32),
            }],
            text_model_name: Some("smollm2".into()),
            llm_max_batch: 8,
            price_nanoton_per_prompt_token: u128::MAX,
            price_nanoton_per_completion_token: 3,
            gpu_mode: Some("confidential".into()),
        }
    }

    #[test]
    fn the_serving_config_items_are_its_encoding() {
        let c = ServingConfig {
            price_nanoton_per_prompt_token: 7,
            ..serving_config()
        };
        // key:value pairs joined as JSON: exactly the digested encoding.
        let joined: Vec<String> = c
            .items()
            .iter()
            .map(|(key, _, value)| format!("\"{key}\":{value}"))
            .collect();
        assert_eq!(format!("{{{}}}", joined.join(",")).into_bytes(), c.encode());
        let other = ServingConfig {
            text_model_name: None,
            ..serving_config()
        };
        let items = other.items();
        assert_eq!(items[9].2, serde_json::Value::Null);
        // A price past u64 is kept exact, as digits.
        assert_eq!(items[11].2, serde_json::Value::from(u128::MAX.to_string()));
    }

    #[test]
    fn the_serving_config_digest_survives_a_json_round_trip_and_changes_with_it() {
        let c = serving_config();
        // The encoding the enclave digests (fixed order, u128 as a number).
        assert!(String::from_utf8(c.encode())
            .unwrap_or_default()
            .starts_with(
                "{\"kokon_version\":\"0.1.0\",\"model_name\":\"magika\",\"device\":\"cpu\","
            ));
        let pretty = serde_json::to_string_pretty(&c).unwrap_or_default();
        let back: Option<ServingConfig> = serde_json::from_str(&pretty).ok();
        assert_eq!(back.map(|b| b.digest()), Some(c.digest()));
        let mut d = c.clone();
        d.price_nanoton_per_completion_token += 1;
        assert_ne!(d.digest(), c.digest());
    }

    #[test]
    fn the_serving_config_digest_pins_the_batching() {
        let c = serving_config();
        for changed in [
            ServingConfig {
                batch_max_rows: c.batch_max_rows + 1,
                ..c.clone()
            },
            ServingConfig {
                batch_delay_us: 0,
                ..c.clone()
            },
        ] {
            assert_ne!(changed.digest(), c.digest(), "{changed:?}");
        }
        let encoded = String::from_utf8(c.encode()).unwrap_or_default();
        assert!(
            encoded.contains("\"max_batch\":64,\"batch_max_rows\":32,\"batch_delay_us\":500,"),
            "{encoded}"
        );
    }

    #[test]
    fn json_round_trip_keeps_the_binding() {
        let c = sample();
        let json = serde_json::to_string(&c).unwrap_or_default();
        let back: Claims = serde_json::from_str(&json).unwrap_or_else(|_| Claims {
            issued_at: 0,
            ..sample()
        });
        assert_eq!(back.report_data(), c.report_data());
    }
}
