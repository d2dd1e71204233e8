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
    let td = &e.evidence.td;
    let c = &e.evidence.claims;
    json!({
        "verdict": "accepted",
        "policy": policy,
        "backend": e.bundle.backend,
        "evidence": {
            "format": "tdx-quote-v4",
            "root": e.evidence.anchor.name,
            "root_sha256": e.evidence.anchor.fingerprint(),
            "simulated": e.evidence.anchor.simulated,
            "platform": e.evidence.platform,
            "debug": td.is_debug(),
            "td_attributes": hex::encode(td.td_attributes),
            "mrtd": hex::encode(td.mr_td),
            "rtmr0": hex::encode(td.rtmr[0]),
            "rtmr1": hex::encode(td.rtmr[1]),
            "rtmr2": hex::encode(td.rtmr[2]),
            "rtmr3": hex::encode(td.rtmr[3]),
            "report_data": hex::encode(td.report_data),
        },
        "claims": {
            "kokon_version": c.kokon_version,
            "model_name": c.model_name,
            "model_digest": hex::encode(c.model_digest),
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
    let td = &e.evidence.td;
    let c = &e.evidence.claims;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<16} {v}\n"));
    line("verdict", format!("ACCEPTED by policy {policy:?}"));
    line("backend", e.bundle.backend.clone());
    line(
        "evidence",
        format!(
            "TDX quote v4, chain to {:?}{}",
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
        if td.is_debug() {
            "ON".into()
        } else {
            "off".into()
        },
    );
    line("MRTD", hex::encode(td.mr_td));
    for (i, r) in td.rtmr.iter().enumerate() {
        line(&format!("RTMR{i}"), hex::encode(r));
    }
    line(
        "binding",
        "REPORTDATA = SHA-512(claims) ✓, RTMR3 = replay(config, model) ✓".into(),
    );
    line(
        "model",
        format!("{} sha256:{}", c.model_name, hex::encode(c.model_digest)),
    );
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
