//! Human-readable and JSON reports of a verified enclave.

use kokon_client::VerifiedEnclave;
use serde_json::json;

fn time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The verification report as JSON.
pub fn json(e: &VerifiedEnclave, policy: &str) -> serde_json::Value {
    let c = &e.evidence.claims;
    let fields: serde_json::Map<String, serde_json::Value> = e
        .evidence
        .fields()
        .into_iter()
        .map(|f| (f.name, f.value.into()))
        .collect();
    json!({
        "verdict": "accepted",
        "policy": policy,
        "backend": e.bundle.backend,
        "evidence": {
            "format": e.bundle.evidence.format,
            "root": e.evidence.anchor.name,
            "root_sha256": e.evidence.anchor.fingerprint(),
            "simulated": e.evidence.anchor.simulated,
            "platform": e.evidence.platform,
            "debug": e.evidence.debug(),
            "tcb": e.evidence.tcb_summary(),
            "fields": fields,
        },
        "claims": {
            "kokon_version": c.kokon_version,
            "model_name": c.model_name,
            "model_digest": hex::encode(c.model_digest),
            "text_model": c.text_model.as_ref().map(|m| serde_json::json!({
                "name": m.name,
                "digest": hex::encode(m.digest),
            })),
            "config_digest": hex::encode(c.config_digest),
            "runtime": c.runtime,
            "receipt_key": hex::encode(c.receipt_key),
            "ohttp_key_id": e.key_config.key_id,
            "ohttp_suite": "X25519 / HKDF-SHA256 / AES-256-GCM",
            "nonce": hex::encode(&c.nonce),
            "issued_at": time(c.issued_at),
        }
    })
}

/// The verification report as text.
pub fn text(e: &VerifiedEnclave, policy: &str) -> String {
    let c = &e.evidence.claims;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<16} {v}\n"));
    line("verdict", format!("ACCEPTED by policy {policy:?}"));
    line("backend", e.bundle.backend.clone());
    line(
        "evidence",
        format!(
            "{:?}, chain to {:?}{}",
            e.bundle.evidence.format,
            e.evidence.anchor.name,
            if e.evidence.anchor.simulated {
                " (SIMULATED: no hardware protection)"
            } else {
                ""
            }
        ),
    );
    line(
        "debug",
        if e.evidence.debug() {
            "ON".into()
        } else {
            "off".into()
        },
    );
    line("TCB", e.evidence.tcb_summary());
    for f in e.evidence.fields() {
        if f.name.starts_with("MR") || f.name.starts_with("RTMR") || f.name == "MEASUREMENT" {
            line(&f.name, f.value);
        }
    }
    line(
        "binding",
        match (e.evidence.td(), &c.text_model) {
            (Some(_), None) => "REPORTDATA = SHA-512(claims) ✓, RTMR3 = replay(config, model) ✓",
            (Some(_), Some(_)) => {
                "REPORTDATA = SHA-512(claims) ✓, RTMR3 = replay(config, model, text model) ✓"
            }
            (None, _) => "REPORT_DATA = SHA-512(claims) ✓",
        }
        .into(),
    );
    line(
        "model",
        format!("{} sha256:{}", c.model_name, hex::encode(c.model_digest)),
    );
    if let Some(m) = &c.text_model {
        line(
            "text model",
            format!("{} sha256:{}", m.name, hex::encode(m.digest)),
        );
    }
    line("runtime", c.runtime.clone());
    line(
        "OHTTP key",
        format!("id {} X25519/HKDF-SHA256/AES-256-GCM", e.key_config.key_id),
    );
    line(
        "receipt key",
        format!("ed25519:{}", hex::encode(c.receipt_key)),
    );
    line("nonce", hex::encode(&c.nonce));
    line("issued at", time(c.issued_at));
    out
}
