#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! TDX quote verification: the sim round trip, one failure per check, and the
//! real go-tdx-guest quote under Intel's root.

use kokon_attestation::claims::{Claims, ServingConfig};
use kokon_attestation::sim::{simulate, SimRoot, SimTd, SimTdx};
use kokon_attestation::tdx::{rtmr_replay, verify_quote};
use kokon_attestation::{
    roots, verify_bundle, AttestationBundle, Error, Evidence, EvidenceFormat, GpuEvidence,
    TrustAnchors,
};

const NOW: i64 = 1_780_000_000; // 2026-05-28

fn claims() -> Claims {
    Claims {
        kokon_version: "0.1.0".into(),
        ohttp_key_config: vec![0x01, 0x00, 0x20],
        receipt_key: [7; 32],
        model_name: "magika".into(),
        model_digest: [9; 32],
        text_model: None,
        config_digest: [3; 32],
        runtime: "onnxruntime cpu".into(),
        nonce: vec![5; 32],
        issued_at: NOW,
        gpus: Vec::new(),
        gpu_cc: None,
    }
}

struct Setup {
    root: SimRoot,
    bundle: AttestationBundle,
}

fn setup_with(debug: bool) -> Setup {
    let root = SimRoot::generate(NOW).unwrap();
    let bundle = simulate(
        &root,
        SimTd {
            mr_td: [0xaa; 48],
            rtmr: [[0; 48]; 3],
            debug,
        },
        claims(),
        NOW,
    )
    .unwrap();
    Setup { root, bundle }
}

fn setup() -> Setup {
    setup_with(false)
}

fn anchors(root: &SimRoot) -> TrustAnchors {
    TrustAnchors {
        roots: vec![root.anchor()],
    }
}

#[test]
fn sim_quote_verifies_and_binds_the_claims() {
    let s = setup();
    let v = verify_bundle(&s.bundle, &anchors(&s.root), NOW).unwrap();
    assert!(v.anchor.simulated);
    assert_eq!(v.td().unwrap().mr_td, [0xaa; 48]);
    assert_eq!(
        v.td().unwrap().rtmr[3],
        rtmr_replay(&s.bundle.claims.rtmr3_events())
    );
    assert!(!v.td().unwrap().is_debug());
    assert_eq!(v.claims, s.bundle.claims);
}

#[test]
fn the_verified_chains_are_described_for_reports() {
    let s = setup();
    let v = verify_bundle(&s.bundle, &anchors(&s.root), NOW).unwrap();
    // The quote's PCK chain, then the sim collateral signer's.
    let positions: Vec<Vec<&str>> = v
        .chains
        .iter()
        .map(|c| c.certificates.iter().map(|x| x.position.as_str()).collect())
        .collect();
    assert_eq!(
        positions,
        [
            vec!["PCK leaf", "PCK platform CA", "root CA"],
            vec!["TCB info", "root CA"]
        ]
    );
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    for chain in &v.chains {
        let root = chain.certificates.last().unwrap();
        assert_eq!(root.sha256, v.anchor.fingerprint());
        assert_eq!(root.subject, root.issuer, "the root is self-issued");
        for (cert, issuer) in chain
            .certificates
            .iter()
            .zip(chain.certificates.iter().skip(1))
        {
            assert_eq!(cert.issuer, issuer.subject);
        }
        for cert in &chain.certificates {
            let from = time::OffsetDateTime::parse(&cert.not_before, rfc3339).unwrap();
            let until = time::OffsetDateTime::parse(&cert.not_after, rfc3339).unwrap();
            assert!(
                from.unix_timestamp() <= NOW && NOW <= until.unix_timestamp(),
                "{cert:?}"
            );
            assert!(!cert.serial.is_empty() && !cert.serial.starts_with("00"));
        }
    }
    assert_eq!(v.chains[0].certificates[0].subject, v.platform);
}

#[test]
fn sim_debug_bit_is_reported() {
    let s = setup_with(true);
    assert!(verify_bundle(&s.bundle, &anchors(&s.root), NOW)
        .unwrap()
        .td()
        .unwrap()
        .is_debug());
}

/// Offsets inside the sim quote: header 0..48, body 48..632, then u32 length,
/// signature 636..700, attestation key 700..764, cert type, size, QE report at 770.
fn flipped(s: &Setup, offset: usize) -> Result<kokon_attestation::VerifiedEvidence, Error> {
    let mut b = s.bundle.clone();
    b.evidence.data[offset] ^= 0x01;
    verify_bundle(&b, &anchors(&s.root), NOW)
}

#[test]
fn a_flipped_byte_anywhere_signed_is_rejected() {
    let s = setup();
    // Header version 4 -> 5: the v5 body descriptor is then read from the TD
    // report and does not name a TD report type.
    assert!(matches!(
        flipped(&s, 0),
        Err(Error::Unsupported {
            field: "quote v5 body type",
            ..
        })
    ));
    // Header version 4 -> 6.
    let mut b = s.bundle.clone();
    b.evidence.data[0] = 6;
    assert!(matches!(
        verify_bundle(&b, &anchors(&s.root), NOW),
        Err(Error::Unsupported {
            field: "quote version",
            ..
        })
    ));
    // QE vendor ID.
    assert!(matches!(
        flipped(&s, 12),
        Err(Error::Mismatch {
            what: "QE vendor ID",
            ..
        })
    ));
    // MRTD, RTMR3 and report data are covered by the quote signature.
    for offset in [48 + 136, 48 + 136 + 48 * 7, 48 + 520, 631] {
        assert_eq!(
            flipped(&s, offset).err(),
            Some(Error::BadSignature {
                what: "quote signature by the attestation key"
            }),
            "offset {offset}"
        );
    }
    // The signature itself and the attestation key.
    assert!(matches!(flipped(&s, 640), Err(Error::BadSignature { .. })));
    assert!(matches!(flipped(&s, 720), Err(Error::Mismatch { .. })));
    // The QE report (its MRENCLAVE) is covered by the PCK signature.
    assert_eq!(
        flipped(&s, 770 + 70).err(),
        Some(Error::BadSignature {
            what: "QE report signature by the PCK key"
        })
    );
    // The QE report signature.
    assert_eq!(
        flipped(&s, 770 + 384 + 3).err(),
        Some(Error::BadSignature {
            what: "QE report signature by the PCK key"
        })
    );
}

#[test]
fn a_flipped_byte_in_the_pck_chain_is_rejected() {
    let s = setup();
    let data = &s.bundle.evidence.data;
    let pem_start = data.windows(5).position(|w| w == b"-----").unwrap();
    // Flip a base64 character in the middle of the leaf certificate's body.
    let mut b = s.bundle.clone();
    let at = pem_start + 28 + 200;
    b.evidence.data[at] = if b.evidence.data[at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let err = verify_bundle(&b, &anchors(&s.root), NOW).unwrap_err();
    assert!(matches!(err, Error::Certificate { .. }), "{err}");
}

#[test]
fn claims_not_bound_by_the_report_data_are_rejected() {
    let s = setup();
    let mut b = s.bundle.clone();
    b.claims.model_digest = [8; 32];
    let err = verify_bundle(&b, &anchors(&s.root), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                what: "report data (SHA-512 of the claims)",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&hex::encode(b.claims.report_data())),
        "message names the expected value: {err}"
    );
}

#[test]
fn rtmr3_must_replay_to_the_claimed_config_and_model() {
    let root = SimRoot::generate(NOW).unwrap();
    let tdx = SimTdx::new(
        &root,
        SimTd {
            mr_td: [0xaa; 48],
            rtmr: [[0; 48]; 3],
            debug: false,
        },
        NOW,
    )
    .unwrap();
    // No RTMR3 extension: the quote binds the claims but RTMR3 is all zero.
    let c = claims();
    let quote = tdx.quote(c.report_data()).unwrap();
    let bundle = AttestationBundle {
        version: 1,
        backend: "sim".into(),
        evidence: Evidence {
            format: EvidenceFormat::TdxQuote,
            data: quote,
            certificates: vec![],
            collateral: None,
            crl: Vec::new(),
        },
        claims: c,
        serving_config: None,
        gpu_evidence: Vec::new(),
        gpu_rims: Default::default(),
    };
    let err = verify_bundle(&bundle, &anchors(&root), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                what: "RTMR3 (replay of the claimed config and model events)",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn another_root_is_not_trusted() {
    let s = setup();
    let other = SimRoot::generate(NOW).unwrap();
    let err = verify_bundle(&s.bundle, &anchors(&other), NOW).unwrap_err();
    assert!(matches!(err, Error::UntrustedRoot { .. }), "{err}");
    let intel = TrustAnchors {
        roots: vec![roots::intel_sgx_root().unwrap()],
    };
    let err = verify_bundle(&s.bundle, &intel, NOW)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("intel-sgx-root") && err.contains("kokon simulated TEE root"),
        "{err}"
    );
}

#[test]
fn certificates_are_checked_at_the_given_time() {
    let s = setup();
    let a = anchors(&s.root);
    assert!(matches!(
        verify_bundle(&s.bundle, &a, NOW - 3 * 24 * 3600),
        Err(Error::CertificateNotValidAt { .. })
    ));
    assert!(matches!(
        verify_bundle(&s.bundle, &a, NOW + 2 * 365 * 24 * 3600),
        Err(Error::CertificateNotValidAt { .. })
    ));
}

#[test]
fn every_truncation_and_trailing_bytes_are_rejected_without_panic() {
    let s = setup();
    let data = &s.bundle.evidence.data;
    let a = anchors(&s.root);
    for len in 0..data.len() {
        assert!(
            verify_quote(&data[..len], &a, NOW).is_err(),
            "truncated to {len} accepted"
        );
    }
    // Zero padding (as the kernel's fixed-size quote buffers carry) is accepted;
    // any other trailing byte is not.
    let mut padded = data.clone();
    padded.extend_from_slice(&[0; 70]);
    assert!(verify_quote(&padded, &a, NOW).is_ok());
    let mut longer = data.clone();
    longer.push(1);
    assert!(matches!(
        verify_quote(&longer, &a, NOW),
        Err(Error::TrailingBytes {
            what: "quote",
            extra: 1
        })
    ));
}

fn fixture(path: &str) -> Option<Vec<u8>> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(path);
    match std::fs::read(&full) {
        Ok(bytes) => Some(bytes),
        Err(e) => panic!(
            "fixture {} unreadable ({e}); ../shared must sit beside the repository",
            full.display()
        ),
    }
}

#[test]
fn real_go_tdx_guest_quote_verifies_under_intel_root_in_2023_and_expires_by_2053() {
    let file = fixture("tdx/gotdx_prod_quote_v4_spr_e4.dat").unwrap();
    // go-tdx-guest appends "extra bytes(only for testing purpose)" to its sample; kokon
    // rejects anything after the declared signature data.
    let declared = 636 + u32::from_le_bytes(file[632..636].try_into().unwrap()) as usize;
    let intel = TrustAnchors {
        roots: vec![roots::intel_sgx_root().unwrap()],
    };
    assert!(matches!(
        verify_quote(&file, &intel, 1_688_173_200),
        Err(Error::TrailingBytes {
            what: "quote",
            extra: 39
        })
    ));
    let quote = &file[..declared];
    let intel = TrustAnchors {
        roots: vec![roots::intel_sgx_root().unwrap()],
    };
    let at_2023 = 1_688_173_200; // 2023-07-01T01:00Z
    let v = verify_quote(quote, &intel, at_2023).unwrap();
    assert_eq!(v.chain.anchor.name, "intel-sgx-root");
    assert!(!v.chain.anchor.simulated);
    let at_2053 = 2_635_635_600; // 2053-07-08
    assert!(matches!(
        verify_quote(quote, &intel, at_2053),
        Err(Error::CertificateNotValidAt { .. })
    ));
    // The same real quote is rejected by a trust store holding only a sim root.
    let sim = SimRoot::generate(at_2023).unwrap();
    assert!(matches!(
        verify_quote(quote, &anchors(&sim), at_2023),
        Err(Error::UntrustedRoot { .. })
    ));
}

#[test]
fn every_structural_field_is_checked() {
    let s = setup();
    let a = anchors(&s.root);
    let check = |offset: usize, value: &[u8]| {
        let mut q = s.bundle.evidence.data.clone();
        q[offset..offset + value.len()].copy_from_slice(value);
        verify_quote(&q, &a, NOW).unwrap_err()
    };
    assert!(matches!(
        check(2, &[3, 0]),
        Error::Unsupported {
            field: "attestation key type",
            ..
        }
    ));
    assert!(matches!(
        check(4, &[0, 0, 0, 0]),
        Error::Unsupported {
            field: "TEE type",
            ..
        }
    ));
    assert!(matches!(
        check(764, &[5, 0]),
        Error::Unsupported {
            field: "certification data type",
            ..
        }
    ));
    assert!(matches!(
        check(766, &[0xff, 0xff, 0xff, 0xff]),
        Error::TooLarge {
            what: "certification data"
        }
    ));
    assert!(matches!(
        check(632, &[0xff, 0xff, 0xff, 0x7f]),
        Error::TooLarge {
            what: "quote signature data"
        }
    ));
    // QE report (384) + its signature (64) + auth data size (2) and data (32): the inner type.
    assert!(matches!(
        check(770 + 384 + 64 + 2 + 32, &[6, 0]),
        Error::Unsupported {
            field: "PCK certification data type",
            ..
        }
    ));
}

#[test]
fn unsupported_bundle_versions_are_rejected() {
    let s = setup();
    let mut json: serde_json::Value = serde_json::from_slice(&s.bundle.to_json()).unwrap();
    json["version"] = serde_json::json!(2);
    let err = AttestationBundle::from_json(json.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                field: "bundle version",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        AttestationBundle::from_json(b"{\"version\": 1}"),
        Err(Error::Bundle(_))
    ));
}

/// The bundle's unsigned JSON values have one accepted text each.
#[test]
fn bundle_json_values_are_read_strictly() {
    let s = setup();
    let json: serde_json::Value = serde_json::from_slice(&s.bundle.to_json()).unwrap();
    let parse = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        edit(&mut j);
        AttestationBundle::from_json(j.to_string().as_bytes())
    };
    // Unchanged, it reads back and verifies.
    let b = parse(&|_| {}).unwrap();
    verify_bundle(&b, &anchors(&s.root), NOW).unwrap();
    let rejected = |what: &str, edit: &dyn Fn(&mut serde_json::Value), expected: &str| {
        let err = parse(edit).unwrap_err().to_string();
        assert!(err.contains(expected), "{what}: {err}");
    };
    let upper = |v: &mut serde_json::Value| {
        *v = serde_json::json!(v.as_str().unwrap().to_uppercase());
    };
    rejected(
        "uppercase hex in the claims",
        &|j| j["claims"]["nonce"] = serde_json::json!("0A".repeat(32)),
        "expected lowercase hex, found 'A' at character 1",
    );
    rejected(
        "uppercase hex in a collateral signature",
        &|j| upper(&mut j["evidence"]["collateral"]["tcb_info_signature"]),
        "expected lowercase hex",
    );
    rejected(
        "an unknown collateral field",
        &|j| j["evidence"]["collateral"]["pck_certificate_chain"] = serde_json::json!(""),
        "unknown field `pck_certificate_chain`",
    );
    rejected(
        "base64 with a line break",
        &|j| {
            let data = j["evidence"]["data"].as_str().unwrap().to_string();
            j["evidence"]["data"] = serde_json::json!(format!("{}\n{}", &data[..76], &data[76..]));
        },
        "Invalid symbol 10",
    );
    // Padded base64 whose unused trailing bits are not zero: "AQA=" is
    // [1, 0]; "AQB=" would decode to the same bytes under a lenient decoder.
    let lenient = |text: &str| {
        let mut j = json.clone();
        j["claims"]["ohttp_key_config"] = serde_json::json!(text);
        AttestationBundle::from_json(j.to_string().as_bytes())
    };
    assert!(lenient("AQA=").is_ok());
    let err = lenient("AQB=").unwrap_err().to_string();
    assert!(err.contains("Invalid last symbol"), "{err}");

    // The backend name must be what the evidence implies.
    let mut b = s.bundle.clone();
    b.backend = "tdx".into();
    let err = verify_bundle(&b, &anchors(&s.root), NOW)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bundle backend (its name vs the evidence's format and root) mismatch: expected sim, found tdx"),
        "{err}"
    );
}

mod chains {
    use kokon_attestation::pki::verify_chain;
    use kokon_attestation::{Error, TrustAnchor, TrustAnchors};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn params(cn: &str, ca: bool) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p
    }

    struct Pki {
        root_der: Vec<u8>,
        root: Issuer<'static, KeyPair>,
    }

    fn root() -> Pki {
        let key = KeyPair::generate().unwrap();
        let p = params("test root", true);
        let cert = p.self_signed(&key).unwrap();
        Pki {
            root_der: cert.der().to_vec(),
            root: Issuer::new(p, key),
        }
    }

    fn anchors(pki: &Pki) -> TrustAnchors {
        TrustAnchors {
            roots: vec![TrustAnchor {
                name: "test".into(),
                der: pki.root_der.clone(),
                simulated: true,
            }],
        }
    }

    const NOW: i64 = 1_780_000_000;

    #[test]
    fn a_well_formed_chain_verifies() {
        let pki = root();
        let (leaf_key, ca_key) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let ca_params = params("ca", true);
        let ca = ca_params.signed_by(&ca_key, &pki.root).unwrap();
        let leaf = params("leaf", false)
            .signed_by(&leaf_key, &Issuer::new(ca_params, ca_key))
            .unwrap();
        let chain = vec![leaf.der().to_vec(), ca.der().to_vec(), pki.root_der.clone()];
        assert!(verify_chain(&chain, &anchors(&pki), NOW, &[]).is_ok());
    }

    #[test]
    fn an_issuer_that_is_not_a_ca_is_rejected() {
        let pki = root();
        let (leaf_key, mid_key) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let mid_params = params("not a ca", false);
        let mid = mid_params.signed_by(&mid_key, &pki.root).unwrap();
        let leaf = params("leaf", false)
            .signed_by(&leaf_key, &Issuer::new(mid_params, mid_key))
            .unwrap();
        let chain = vec![
            leaf.der().to_vec(),
            mid.der().to_vec(),
            pki.root_der.clone(),
        ];
        let err = verify_chain(&chain, &anchors(&pki), NOW, &["leaf", "mid", "root"]).unwrap_err();
        assert!(
            matches!(&err, Error::Certificate { position, reason, .. } if position == "mid" && reason.contains("not a CA")),
            "{err}"
        );
    }

    #[test]
    fn a_chain_out_of_order_is_rejected() {
        let pki = root();
        let other = root();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = params("leaf", false)
            .signed_by(&leaf_key, &other.root)
            .unwrap();
        // The leaf names "test root" as issuer, but another key of that name signed it.
        let err = verify_chain(
            &[leaf.der().to_vec(), pki.root_der.clone()],
            &anchors(&pki),
            NOW,
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Certificate { reason, .. } if reason.contains("signature does not verify")),
            "{err}"
        );
        let mut p = params("stranger", true);
        p.distinguished_name
            .push(DnType::OrganizationName, "elsewhere");
        let stranger_key = KeyPair::generate().unwrap();
        let stranger = p.self_signed(&stranger_key).unwrap();
        let err = verify_chain(
            &[
                leaf.der().to_vec(),
                stranger.der().to_vec(),
                pki.root_der.clone(),
            ],
            &anchors(&pki),
            NOW,
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Certificate { reason, .. } if reason.contains("does not match the next certificate's subject")),
            "{err}"
        );
        assert!(verify_chain(&[], &anchors(&pki), NOW, &[]).is_err());
    }
}

#[test]
fn a_pck_chain_must_have_exactly_three_certificates() {
    let s = setup();
    let data = &s.bundle.evidence.data;
    // Drop the last certificate (the root) from the PEM chain and fix the two length fields.
    let pem_start = data.windows(5).position(|w| w == b"-----").unwrap();
    let text = std::str::from_utf8(&data[pem_start..]).unwrap();
    let cut = text.rfind("-----BEGIN CERTIFICATE-----").unwrap();
    let removed = text.len() - cut;
    let mut q = data[..pem_start + cut].to_vec();
    let fix = |q: &mut Vec<u8>, at: usize| {
        let v = u32::from_le_bytes(q[at..at + 4].try_into().unwrap()) - removed as u32;
        q[at..at + 4].copy_from_slice(&v.to_le_bytes());
    };
    fix(&mut q, 632); // signature data size
    fix(&mut q, 766); // certification data size
    fix(&mut q, pem_start - 4); // PCK chain size
    let err = verify_quote(&q, &anchors(&s.root), NOW).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { field: "PCK certificate chain length", found, .. } if found == "2"),
        "{err}"
    );
}

fn serving_config() -> ServingConfig {
    ServingConfig {
        model_name: "magika".into(),
        device: "cpu".into(),
        price_nanoton_per_unit: 1000,
        ..ServingConfig::default()
    }
}

#[test]
fn the_bundles_serving_config_must_be_what_config_digest_commits_to() {
    let root = SimRoot::generate(NOW).unwrap();
    let config = serving_config();
    let mut c = claims();
    c.config_digest = config.digest();
    let td = SimTd {
        mr_td: [0xaa; 48],
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let mut bundle = simulate(&root, td, c, NOW).unwrap();
    bundle.serving_config = Some(config.clone());
    // It survives the JSON round trip and verifies.
    let bundle = AttestationBundle::from_json(&bundle.to_json()).unwrap();
    let v = verify_bundle(&bundle, &anchors(&root), NOW).unwrap();
    assert_eq!(v.serving_config, Some(config.clone()));

    // A host that shows another configuration (a lower price, say) is caught.
    let mut cheaper = bundle.clone();
    cheaper.serving_config = Some(ServingConfig {
        price_nanoton_per_unit: 1,
        ..config
    });
    match verify_bundle(&cheaper, &anchors(&root), NOW).unwrap_err() {
        Error::Mismatch {
            what,
            expected,
            found,
        } => {
            assert!(what.starts_with("serving configuration"), "{what}");
            assert_eq!(expected, hex::encode(bundle.claims.config_digest));
            assert_ne!(found, expected);
        }
        other => panic!("{other}"),
    }
    // Without it (older enclaves) the bundle verifies, with nothing to show.
    let mut bare = bundle;
    bare.serving_config = None;
    let v = verify_bundle(&bare, &anchors(&root), NOW).unwrap();
    assert_eq!(v.serving_config, None);
}

fn gpu(n: u8) -> GpuEvidence {
    GpuEvidence {
        report: vec![n; 8],
        chain_pem: format!("chain of GPU {n}"),
        ocsp: Vec::new(),
    }
}

/// A sim bundle whose claims name `claimed` and which carries `carried`,
/// through its JSON, verified.
fn with_gpus(
    claimed: &[&GpuEvidence],
    carried: &[&GpuEvidence],
) -> Result<Vec<GpuEvidence>, Error> {
    let s = setup();
    let claims = Claims {
        gpus: claimed.iter().map(|e| e.claim()).collect(),
        ..claims()
    };
    let td = SimTd {
        mr_td: [0xaa; 48],
        rtmr: [[0; 48]; 3],
        debug: false,
    };
    let mut bundle = simulate(&s.root, td, claims, NOW).unwrap();
    bundle.gpu_evidence = carried.iter().map(|e| (*e).clone()).collect();
    let bundle = AttestationBundle::from_json(&bundle.to_json()).unwrap();
    verify_bundle(&bundle, &anchors(&s.root), NOW).map(|v| v.gpu_evidence)
}

#[test]
fn the_bundles_gpu_evidence_must_be_what_the_claims_name_one_to_one_in_order() {
    let (a, b) = (gpu(1), gpu(2));
    assert_eq!(
        with_gpus(&[&a, &b], &[&a, &b]).unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(with_gpus(&[], &[]).unwrap(), Vec::new());
    let d = |e: &GpuEvidence| hex::encode(e.digest());
    let mut other_chain = b.clone();
    other_chain.chain_pem.push('\n');
    let cases = [
        (
            "evidence without a claim",
            with_gpus(&[&a], &[&a, &b]),
            format!("expected GPU 1: none, found GPU 1: {}", d(&b)),
        ),
        (
            "evidence in a bundle that claims none",
            with_gpus(&[], &[&a]),
            format!("expected GPU 0: none, found GPU 0: {}", d(&a)),
        ),
        (
            "a claim without evidence",
            with_gpus(&[&a, &b], &[&a]),
            format!("expected GPU 1: {}, found GPU 1: none", d(&b)),
        ),
        (
            "digests swapped",
            with_gpus(&[&a, &b], &[&b, &a]),
            format!("expected GPU 0: {}, found GPU 0: {}", d(&a), d(&b)),
        ),
        (
            "another chain",
            with_gpus(&[&a, &b], &[&a, &other_chain]),
            format!(
                "expected GPU 1: {}, found GPU 1: {}",
                d(&b),
                d(&other_chain)
            ),
        ),
    ];
    for (name, result, tail) in cases {
        let e = result.unwrap_err().to_string();
        assert_eq!(
            e,
            format!("GPU evidence (the claims' gpus vs SHA-384 of the bundle's gpu_evidence) mismatch: {tail}"),
            "{name}"
        );
    }
}

#[test]
fn gpu_evidence_json_is_read_strictly() {
    let s = setup();
    let mut json: serde_json::Value = serde_json::from_slice(&s.bundle.to_json()).unwrap();
    json["gpu_evidence"] = serde_json::json!([{"report": "AQID", "chain_pem": "x", "extra": 1}]);
    let e = AttestationBundle::from_json(json.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("unknown field `extra`"), "{e}");
    json["gpu_evidence"] = serde_json::json!([{"report": "not base64!", "chain_pem": "x"}]);
    assert!(AttestationBundle::from_json(json.to_string().as_bytes()).is_err());
    json["gpu_evidence"] = serde_json::json!([{"report": "AQID", "chain_pem": "x"}]);
    let b = AttestationBundle::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(b.gpu_evidence[0].report, [1, 2, 3]);
    json["claims"]["gpus"] = serde_json::json!([{"evidence_sha384": "AB".repeat(48)}]);
    let e = AttestationBundle::from_json(json.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("expected lowercase hex"), "{e}");
}
