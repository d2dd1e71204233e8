#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Collateral fetching against a local HTTP server that serves the fixture
//! collateral the way Intel PCS and AMD KDS do: the assembled collateral
//! equals the fixture byte for byte (so the client's verification passes),
//! it is cached on disk until its next update, and bundles are completed.

use std::collections::BTreeMap;
use std::path::Path;

use kokon_attestation::claims::Claims;
use kokon_attestation::nvidia::{gpu_nonce, verify, Expectations, Report, OCSP_POSITIONS};
use kokon_attestation::ocsp;
use kokon_attestation::pki::{pem_certificates, ChainLink};
use kokon_attestation::roots::{self, AmdProduct};
use kokon_attestation::sim::rim::SimRimSigner;
use kokon_attestation::sim::SimGpu;
use kokon_attestation::tdx::verify_quote_with_collateral;
use kokon_attestation::{
    AttestationBundle, Evidence, EvidenceFormat, GpuEvidence, GpuRim, TrustAnchors,
};
use kokon_host::collateral::{CollateralConfig, CollateralService};
use kokon_tests::pcs::{
    dcap_collateral, fixture, fixture_routes, post_key, serve, virtee_report, Routes, Server,
};

fn at(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

fn service(server: &Server, cache: &Path) -> CollateralService {
    CollateralService::new(CollateralConfig {
        pcs_url: server.base.clone(),
        root_crl_url: format!("{}/IntelSGXRootCA.der", server.base),
        kds_url: server.base.clone(),
        snp_product: Some(AmdProduct::Milan),
        nvidia_ocsp_url: format!("{}/ocsp", server.base),
        nvidia_rim_url: server.base.clone(),
        cache_dir: Some(cache.to_path_buf()),
    })
    .unwrap()
}

#[tokio::test]
async fn tdx_collateral_is_assembled_from_pcs_responses_verified_and_cached() {
    let expected = dcap_collateral();
    let server = serve(fixture_routes()).await;
    let cache = tempfile::tempdir().unwrap();
    let svc = service(&server, cache.path());
    let quote = fixture("tdx/dcapqvl_tdx_quote.dat");
    let now = at("2025-07-01T00:00:00Z");

    let got = svc.tdx(&quote, now).await.unwrap();
    assert_eq!(got, expected, "byte-identical to what Intel signed");
    let intel = TrustAnchors {
        roots: vec![roots::intel_sgx_root().unwrap()],
    };
    verify_quote_with_collateral(&quote, &got, &intel, now).unwrap();
    assert_eq!(svc.fetch_count(), 4);

    // Cached: in memory, and on disk for a new process.
    svc.tdx(&quote, now).await.unwrap();
    assert_eq!(svc.fetch_count(), 4);
    let again = service(&server, cache.path());
    assert_eq!(again.tdx(&quote, now).await.unwrap(), expected);
    assert_eq!(again.fetch_count(), 0);
    // Past the TCB info's next update, it is fetched again.
    again.tdx(&quote, at("2025-07-20T00:00:00Z")).await.unwrap();
    assert_eq!(again.fetch_count(), 4);
    assert!(server
        .hits
        .lock()
        .unwrap()
        .iter()
        .all(|h| !h.contains("processor")));
}

#[tokio::test]
async fn bundles_without_collateral_are_completed_and_others_left_alone() {
    let expected = dcap_collateral();
    let server = serve(fixture_routes()).await;
    let cache = tempfile::tempdir().unwrap();
    let svc = service(&server, cache.path());
    let claims = Claims {
        nonce: vec![4; 16],
        ..kokon_tests::placeholder_claims(0)
    };
    let bundle = |format, data: Vec<u8>| AttestationBundle {
        version: 1,
        backend: "tdx".into(),
        evidence: Evidence {
            format,
            data,
            certificates: vec![],
            collateral: None,
            crl: Vec::new(),
        },
        claims: claims.clone(),
        serving_config: None,
        gpu_evidence: Vec::new(),
        gpu_rims: Default::default(),
    };
    let now = at("2025-07-01T00:00:00Z");
    let tdx = bundle(
        EvidenceFormat::TdxQuote,
        fixture("tdx/dcapqvl_tdx_quote.dat"),
    );
    let done = svc.complete(tdx.to_json(), now).await;
    let done = AttestationBundle::from_json(&done).unwrap();
    assert_eq!(done.evidence.collateral, Some(expected));

    // Completing it again changes nothing and fetches nothing.
    let before = svc.fetch_count();
    let json = done.to_json();
    assert_eq!(svc.complete(json.clone(), now).await, json);
    assert_eq!(svc.fetch_count(), before);

    let snp = bundle(EvidenceFormat::SnpReport, virtee_report());
    let done = AttestationBundle::from_json(&svc.complete(snp.to_json(), now).await).unwrap();
    let chain = pem_certificates(&fixture("snp/virtee_cert_chain_milan.pem")).unwrap();
    assert_eq!(done.evidence.certificates.len(), 3);
    assert_eq!(
        done.evidence.certificates[0],
        fixture("snp/virtee_vcek_milan.der")
    );
    assert_eq!(&done.evidence.certificates[1..], &chain[..]);
    assert_eq!(done.evidence.crl, fixture("tdx/gotdx_rootcrl.der"));
    assert!(server
        .hits
        .lock()
        .unwrap()
        .contains(&"/vcek/v1/Milan/crl".to_string()));

    // The CRL and the chain come from the cache the second time.
    let before = svc.fetch_count();
    let again = AttestationBundle::from_json(&svc.complete(snp.to_json(), now).await).unwrap();
    assert_eq!(again.evidence, done.evidence);
    assert_eq!(svc.fetch_count(), before);

    // Without a CRL at KDS the chain still comes, and the bundle says so by
    // its empty CRL (a policy that requires one then rejects it).
    let mut no_crl = fixture_routes();
    no_crl.remove("/vcek/v1/Milan/crl");
    let server2 = serve(no_crl).await;
    let svc2 = service(&server2, tempfile::tempdir().unwrap().path());
    let partial = AttestationBundle::from_json(&svc2.complete(snp.to_json(), now).await).unwrap();
    assert_eq!(partial.evidence.certificates.len(), 3);
    assert!(partial.evidence.crl.is_empty());

    // An unreachable service leaves the bundle as it was.
    let dead = CollateralService::new(CollateralConfig {
        pcs_url: "http://127.0.0.1:9".into(),
        root_crl_url: "http://127.0.0.1:9/crl".into(),
        kds_url: "http://127.0.0.1:9".into(),
        snp_product: None,
        nvidia_ocsp_url: "http://127.0.0.1:9/ocsp".into(),
        nvidia_rim_url: "http://127.0.0.1:9".into(),
        cache_dir: None,
    })
    .unwrap();
    let json = tdx.to_json();
    assert_eq!(dead.complete(json.clone(), now).await, json);
}

#[tokio::test]
async fn a_vlek_bundle_gets_the_asvk_chain_and_the_vlek_crl() {
    let vlek = fixture("snp/trustee_vlek.der");
    // KDS's /vlek paths; the host relays what it serves without judging it
    // (no fixture holds the real ASVK, so the Milan ASK chain stands in).
    let mut r = Routes::new();
    r.insert(
        "/vlek/v1/Milan/cert_chain".into(),
        (vec![], fixture("snp/virtee_cert_chain_milan.pem")),
    );
    r.insert(
        "/vlek/v1/Milan/crl".into(),
        (vec![], fixture("tdx/gotdx_rootcrl.der")),
    );
    let server = serve(r).await;
    let svc = service(&server, tempfile::tempdir().unwrap().path());
    let report = fixture("snp/trustee_vlek_report.bin");
    let now = at("2025-07-01T00:00:00Z");
    let certs = svc
        .snp(&report, std::slice::from_ref(&vlek), now)
        .await
        .unwrap();
    let chain = pem_certificates(&fixture("snp/virtee_cert_chain_milan.pem")).unwrap();
    assert_eq!(certs[0], vlek);
    assert_eq!(&certs[1..], &chain[..]);
    assert_eq!(
        svc.snp_crl(&report, now).await.unwrap(),
        fixture("tdx/gotdx_rootcrl.der")
    );
    // KDS serves no VLEKs: without the host's certificate table it is an error.
    let err = format!("{:#}", svc.snp(&report, &[], now).await.unwrap_err());
    assert!(
        err.contains("needs the VLEK from the host's certificate table"),
        "{err}"
    );
    // A chain that is not two certificates is refused, and not cached.
    let mut bad = Routes::new();
    bad.insert(
        "/vcek/v1/Milan/cert_chain".into(),
        (vec![], b"not pem".to_vec()),
    );
    let parsed = kokon_attestation::snp::Report::parse(&virtee_report()).unwrap();
    bad.insert(
        format!(
            "/vcek/v1/Milan/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
            hex::encode(parsed.chip_id)
        ),
        (vec![], fixture("snp/virtee_vcek_milan.der")),
    );
    let server = serve(bad).await;
    let cache = tempfile::tempdir().unwrap();
    let svc = service(&server, cache.path());
    let err = format!(
        "{:#}",
        svc.snp(&virtee_report(), &[], now).await.unwrap_err()
    );
    assert!(err.contains("cert_chain"), "{err}");
    let before = svc.fetch_count();
    assert!(svc.snp(&virtee_report(), &[], now).await.is_err());
    assert_eq!(
        svc.fetch_count(),
        before + 1,
        "the VCEK is cached, the bad chain is not"
    );
}

#[tokio::test]
async fn without_a_cache_directory_collateral_stays_in_memory_and_a_missing_header_is_named() {
    let server = serve(fixture_routes()).await;
    let config = |base: &str| CollateralConfig {
        pcs_url: base.into(),
        root_crl_url: format!("{base}/IntelSGXRootCA.der"),
        kds_url: base.into(),
        snp_product: None,
        nvidia_ocsp_url: format!("{base}/ocsp"),
        nvidia_rim_url: base.into(),
        cache_dir: None,
    };
    let svc = CollateralService::new(config(&server.base)).unwrap();
    let quote = fixture("tdx/dcapqvl_tdx_quote.dat");
    let now = at("2025-07-01T00:00:00Z");
    assert_eq!(svc.tdx(&quote, now).await.unwrap(), dcap_collateral());
    svc.tdx(&quote, now).await.unwrap();
    assert_eq!(svc.fetch_count(), 4, "kept in memory");
    let fresh = CollateralService::new(config(&server.base)).unwrap();
    fresh.tdx(&quote, now).await.unwrap();
    assert_eq!(fresh.fetch_count(), 4, "nothing on disk: fetched again");

    // A PCS answer without its issuer-chain header is refused, naming it.
    let mut routes = fixture_routes();
    routes
        .get_mut("/tdx/certification/v4/tcb?fmspc=B0C06F000000")
        .unwrap()
        .0
        .clear();
    let server = serve(routes).await;
    let svc = CollateralService::new(config(&server.base)).unwrap();
    let err = format!("{:#}", svc.tdx(&quote, now).await.unwrap_err());
    assert!(
        err.contains("TCB info issuer chain") && err.contains("TCB-Info-Issuer-Chain header"),
        "{err}"
    );
}

/// What a simulated GPU's host fetches: its evidence (the real H100
/// report re-signed), its responder's good answers, and its RIMs with
/// their chain's good answers.
struct GpuCollateral {
    gpu: SimGpu,
    evidence: GpuEvidence,
    answers: Vec<Vec<u8>>,
    rims: BTreeMap<String, GpuRim>,
}

/// [`GpuCollateral`], and the routes that serve it as NVIDIA's OCSP
/// responder (by what is posted) and RIM service (JSON, the RIM in base64)
/// do.
fn gpu_ocsp_routes(now: i64) -> (GpuCollateral, Routes) {
    let template = hex::decode(
        String::from_utf8(fixture("nvidia/trustee_hopperAttestationReport.txt"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let gpu = SimGpu::for_template(&template).unwrap();
    let evidence = gpu.evidence(&template, &gpu_nonce(&[4; 16])).unwrap();
    let answers = gpu.ocsp_good(now - 3600).unwrap();
    let links = ChainLink::parse_chain(gpu.chain()).unwrap();
    let mut routes = Routes::new();
    for (position, answer) in OCSP_POSITIONS.zip(&answers) {
        let request = ocsp::request(&links[position], &links[position + 1]).unwrap();
        routes.insert(
            post_key("/ocsp", &request),
            (
                vec![("content-type", "application/ocsp-response".into())],
                answer.clone(),
            ),
        );
    }
    let signer = SimRimSigner::new().unwrap();
    let rim_answers = signer.ocsp_good(now - 3600).unwrap();
    let rim_links = ChainLink::parse_chain(signer.chain()).unwrap();
    for (position, answer) in kokon_attestation::nvidia::rim::OCSP_POSITIONS.zip(&rim_answers) {
        let request = ocsp::request(&rim_links[position], &rim_links[position + 1]).unwrap();
        routes.insert(post_key("/ocsp", &request), (vec![], answer.clone()));
    }
    let mut rims = signer
        .rims_for(&Report::parse(&evidence.report).unwrap())
        .unwrap();
    for (id, rim) in rims.iter_mut() {
        use base64::Engine;
        let body = serde_json::json!({
            "id": id,
            "rim": base64::engine::general_purpose::STANDARD.encode(&rim.rim),
            "sha256": "",
            "request_id": "1",
            "rim_format": "TCG",
        });
        routes.insert(
            format!("/v1/rim/{id}"),
            (
                vec![("content-type", "application/json".into())],
                body.to_string().into_bytes(),
            ),
        );
        rim.ocsp = rim_answers.clone();
    }
    let collateral = GpuCollateral {
        gpu,
        evidence,
        answers,
        rims,
    };
    (collateral, routes)
}

#[tokio::test]
async fn gpu_evidence_gets_nvidias_ocsp_answers_and_rims_cached_until_their_next_update() {
    let now = at("2026-11-27T00:00:00Z");
    let (
        GpuCollateral {
            gpu,
            evidence,
            answers,
            rims,
        },
        routes,
    ) = gpu_ocsp_routes(now);
    let server = serve(routes).await;
    let cache = tempfile::tempdir().unwrap();
    let svc = service(&server, cache.path());
    let claims = Claims {
        nonce: vec![4; 16],
        gpus: vec![evidence.claim()],
        ..kokon_tests::placeholder_claims(0)
    };
    let bundle = AttestationBundle {
        version: 1,
        backend: "sim".into(),
        evidence: Evidence {
            format: EvidenceFormat::TdxQuote,
            data: vec![1],
            certificates: vec![],
            // The quote's collateral is there already: only the GPU's is asked for.
            collateral: Some(dcap_collateral()),
            crl: Vec::new(),
        },
        claims,
        serving_config: None,
        gpu_evidence: vec![evidence.clone()],
        gpu_rims: Default::default(),
    };
    let done = AttestationBundle::from_json(&svc.complete(bundle.to_json(), now).await).unwrap();
    assert_eq!(
        done.gpu_evidence[0].ocsp, answers,
        "one POST per certificate"
    );
    assert_eq!(
        done.gpu_rims, rims,
        "the report's two RIMs, with their chain's answers"
    );
    // 3 POSTs for the GPU's chain, 2 GETs for the RIMs, 3 POSTs for their
    // (shared) signing chain.
    assert_eq!(svc.fetch_count(), 8);
    assert_eq!(
        done.gpu_evidence[0].digest(),
        evidence.digest(),
        "the claims' digest does not cover what the host adds"
    );
    // What the host added verifies for the client.
    let verified = verify(
        &evidence.report,
        evidence.chain_pem.as_bytes(),
        &gpu.anchors(),
        now,
        &Expectations {
            nonce: gpu_nonce(&[4; 16]),
            ..Expectations::default()
        },
    )
    .unwrap();
    verified
        .check_revocation(&done.gpu_evidence[0].ocsp, now)
        .unwrap();

    // Cached: in memory, then on disk for a new process, until the
    // answers' next update (a week), then asked again.
    svc.complete(bundle.to_json(), now).await;
    assert_eq!(svc.fetch_count(), 8);
    assert_eq!(
        again_rims(&server, cache.path(), now).await,
        rims,
        "RIMs and their answers from the disk cache"
    );
    let again = service(&server, cache.path());
    assert_eq!(
        again
            .gpu_ocsp(evidence.chain_pem.as_bytes(), now + 3600)
            .await
            .unwrap(),
        answers
    );
    assert_eq!(again.fetch_count(), 0);
    // The cache keeps an answer for at most a day.
    again
        .gpu_ocsp(evidence.chain_pem.as_bytes(), now + 25 * 3600)
        .await
        .unwrap();
    assert_eq!(again.fetch_count(), 3);
    assert!(server
        .hits
        .lock()
        .unwrap()
        .iter()
        .all(|h| h.starts_with("POST /ocsp ") || h.starts_with("/v1/rim/NV_GPU_")));

    // A responder that does not answer leaves the bundle without OCSP, and
    // evidence that already has answers is left as it is.
    let silent = serve(Routes::new()).await;
    let svc = service(&silent, tempfile::tempdir().unwrap().path());
    let json = bundle.to_json();
    assert_eq!(svc.complete(json.clone(), now).await, json);
    let json = done.to_json();
    assert_eq!(svc.complete(json.clone(), now).await, json);
    assert_eq!(
        svc.fetch_count(),
        3,
        "two failed RIM GETs and one failed POST, then nothing asked"
    );
    // An answer that is not OCSP is named, not cached.
    let mut junk = Routes::new();
    let links = ChainLink::parse_chain(gpu.chain()).unwrap();
    let request = ocsp::request(&links[1], &links[2]).unwrap();
    junk.insert(post_key("/ocsp", &request), (vec![], b"<html>".to_vec()));
    let junk = serve(junk).await;
    let e = service(&junk, tempfile::tempdir().unwrap().path())
        .gpu_ocsp(evidence.chain_pem.as_bytes(), now)
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("(OCSP, certificate 1): collateral: OCSP response: bad DER"),
        "{e:#}"
    );
}

/// The RIMs a fresh service (same cache directory) finds for the report's
/// ids, asking nothing.
async fn again_rims(server: &Server, cache: &Path, now: i64) -> BTreeMap<String, GpuRim> {
    let svc = service(server, cache);
    let mut out = BTreeMap::new();
    for id in [
        "NV_GPU_DRIVER_GH100_550.90.07",
        "NV_GPU_VBIOS_1010_0200_882_96009F0001",
    ] {
        out.insert(id.to_string(), svc.gpu_rim(id, now).await.unwrap());
    }
    assert_eq!(svc.fetch_count(), 0);
    out
}

#[tokio::test]
async fn a_rim_service_answer_for_another_id_or_a_bad_id_is_refused() {
    let now = at("2026-11-27T00:00:00Z");
    let mut routes = Routes::new();
    routes.insert(
        "/v1/rim/NV_GPU_DRIVER_GH100_1.2.3".into(),
        (
            vec![],
            br#"{"id":"NV_GPU_DRIVER_GH100_9.9.9","rim":""}"#.to_vec(),
        ),
    );
    routes.insert(
        "/v1/rim/NV_GPU_DRIVER_GH100_1.2.4".into(),
        (
            vec![],
            br#"{"id":"NV_GPU_DRIVER_GH100_1.2.4","rim":"!"}"#.to_vec(),
        ),
    );
    let server = serve(routes).await;
    let svc = service(&server, tempfile::tempdir().unwrap().path());
    let e = format!(
        "{:#}",
        svc.gpu_rim("NV_GPU_DRIVER_GH100_1.2.3", now)
            .await
            .unwrap_err()
    );
    assert!(
        e.contains("the RIM service answered for \"NV_GPU_DRIVER_GH100_9.9.9\", asked for \"NV_GPU_DRIVER_GH100_1.2.3\""),
        "{e}"
    );
    let e = format!(
        "{:#}",
        svc.gpu_rim("NV_GPU_DRIVER_GH100_1.2.4", now)
            .await
            .unwrap_err()
    );
    assert!(e.contains("the answer's rim is not base64"), "{e}");
    let e = format!("{:#}", svc.gpu_rim("../../etc", now).await.unwrap_err());
    assert!(e.contains("expected letters, digits"), "{e}");
    assert_eq!(svc.fetch_count(), 2, "a bad id is never asked for");
}
