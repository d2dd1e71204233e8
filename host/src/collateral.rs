//! Collateral: what the vendors publish about a platform, fetched by the
//! host and shipped in the attestation bundle.
//!
//! The host is untrusted, and so is everything it fetches: the client
//! verifies every signature, chain, CRL and date itself. The host fetches
//! only because the enclave's VM should not need the network, and caches so
//! that Intel's and AMD's services are asked once per validity period, not
//! once per attestation.
//!
//! - Intel TDX: TCB info and QE identity from Intel PCS (or a PCCS) API v4,
//!   the PCK CRL of the platform's CA, and the SGX Root CA CRL. The FMSPC and
//!   the CA come from the PCK certificate inside the quote.
//! - AMD SEV-SNP: the VCEK for the chip and reported TCB (a VLEK comes from
//!   the host's certificate table instead), the ASK/ARK (or ASVK/ARK) chain,
//!   and the ARK's CRL, from AMD's Key Distribution Service.
//! - NVIDIA GPUs: OCSP responses for each GPU chain's device identity,
//!   provisioner and architecture certificates, from NVIDIA's OCSP
//!   responder (RFC 6960 requests by POST, SHA-384 certificate IDs, no
//!   nonce, so that one answer serves every client until its next update);
//!   the reference integrity manifests of each GPU's driver and VBIOS, from
//!   NVIDIA's RIM service, with OCSP answers for their signing chains.
//!
//! Cached entries live under `cache_dir` as JSON with their expiry: the
//! earliest next-update of the pieces they contain.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use kokon_attestation::nvidia::{self, rim};
use kokon_attestation::pki::{pem_certificates, ChainLink};
use kokon_attestation::roots::AmdProduct;
use kokon_attestation::snp::{Report, SigningKey, TcbVersion};
use kokon_attestation::tdx::collateral::{
    Collateral, PcsResponses, QeIdentity, TcbInfo, PCK_CRL_ISSUER_CHAIN_HEADER,
    QE_IDENTITY_ISSUER_CHAIN_HEADER, SGX_TCB_INFO_ISSUER_CHAIN_HEADER,
    TCB_INFO_ISSUER_CHAIN_HEADER,
};
use kokon_attestation::tdx::pck::{self, PcsPlatform};
use kokon_attestation::tdx::Quote;
use kokon_attestation::{ocsp, xmldsig, GpuRim};
use kokon_attestation::{AttestationBundle, EvidenceFormat};
use serde::{Deserialize, Serialize};

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the SGX Root CA's CRL.
pub const INTEL_ROOT_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// AMD's Key Distribution Service.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";
/// NVIDIA's OCSP responder for its GPU and RIM certificate chains.
pub const NVIDIA_OCSP: &str = "https://ocsp.ndis.nvidia.com/";
/// NVIDIA's RIM service (reference integrity manifests).
pub const NVIDIA_RIM_SERVICE: &str = "https://rim.attestation.nvidia.com";
/// Largest response accepted from a collateral service.
const MAX_RESPONSE: usize = 1 << 20;
/// Time allowed for one collateral request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Where collateral comes from and where it is kept.
#[derive(Debug, Clone)]
pub struct CollateralConfig {
    /// Intel PCS or PCCS base URL (API v4 paths are appended).
    pub pcs_url: String,
    /// URL of the Intel SGX Root CA CRL (DER).
    pub root_crl_url: String,
    /// AMD KDS base URL.
    pub kds_url: String,
    /// SNP product line, for reports (version 2) that do not name it.
    pub snp_product: Option<AmdProduct>,
    /// NVIDIA's OCSP responder URL.
    pub nvidia_ocsp_url: String,
    /// NVIDIA's RIM service base URL (`/v1/rim/<id>` is appended).
    pub nvidia_rim_url: String,
    /// Cache directory; without one, fetched collateral is kept in memory
    /// only (an auditor's one-off fetch).
    pub cache_dir: Option<PathBuf>,
}

impl CollateralConfig {
    /// The vendors' public services, cached under `cache_dir`.
    pub fn public(cache_dir: Option<PathBuf>) -> Self {
        Self {
            pcs_url: INTEL_PCS.into(),
            root_crl_url: INTEL_ROOT_CRL.into(),
            kds_url: AMD_KDS.into(),
            snp_product: None,
            nvidia_ocsp_url: NVIDIA_OCSP.into(),
            nvidia_rim_url: NVIDIA_RIM_SERVICE.into(),
            cache_dir,
        }
    }
}

/// One cached entry: a value and when it stops being usable.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached<T> {
    valid_until: i64,
    value: T,
}

/// Fetches and caches collateral.
pub struct CollateralService {
    config: CollateralConfig,
    client: kokon_fetch::HttpsClient,
    memory: Mutex<HashMap<String, (i64, serde_json::Value)>>,
    fetches: std::sync::atomic::AtomicU64,
}

fn rfc3339(text: &str) -> anyhow::Result<i64> {
    Ok(
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("bad date {text:?}"))?
            .unix_timestamp(),
    )
}

impl CollateralService {
    /// A service with `config`; HTTPS is verified against the Mozilla roots.
    pub fn new(config: CollateralConfig) -> anyhow::Result<Self> {
        let client = kokon_fetch::client()?;
        Ok(Self {
            config,
            client,
            memory: Mutex::new(HashMap::new()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many HTTP requests this service has made.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn get(&self, url: &str) -> anyhow::Result<kokon_fetch::Fetched> {
        let request = http::Request::get(url)
            .body(Default::default())
            .with_context(|| format!("bad URL {url}"))?;
        self.send(request).await
    }

    async fn send(
        &self,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> anyhow::Result<kokon_fetch::Fetched> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let what = format!("{} {}", request.method(), request.uri());
        let fetched =
            kokon_fetch::send(&self.client, request, REQUEST_TIMEOUT, MAX_RESPONSE).await?;
        if !fetched.status.is_success() {
            bail!("{what}: {}", fetched.status);
        }
        Ok(fetched)
    }

    /// A cached value, from memory or disk, if still valid at `now`.
    fn cached<T: for<'de> Deserialize<'de>>(&self, key: &str, now: i64) -> Option<T> {
        if let Ok(memory) = self.memory.lock() {
            if let Some((until, value)) = memory.get(key) {
                if now < *until {
                    return serde_json::from_value(value.clone()).ok();
                }
            }
        }
        let dir = self.config.cache_dir.as_ref()?;
        let bytes = std::fs::read(dir.join(format!("{key}.json"))).ok()?;
        let cached: Cached<serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
        if now >= cached.valid_until {
            return None;
        }
        if let Ok(mut memory) = self.memory.lock() {
            memory.insert(key.into(), (cached.valid_until, cached.value.clone()));
        }
        serde_json::from_value(cached.value).ok()
    }

    fn store<T: Serialize>(&self, key: &str, value: &T, valid_until: i64) -> anyhow::Result<()> {
        let value = serde_json::to_value(value)?;
        if let Ok(mut memory) = self.memory.lock() {
            memory.insert(key.into(), (valid_until, value.clone()));
        }
        let Some(dir) = &self.config.cache_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{key}.json"));
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&Cached { valid_until, value })?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("installing {}", path.display()))?;
        Ok(())
    }

    /// Intel's collateral for a TDX quote, from the cache or the PCS.
    pub async fn tdx(&self, quote: &[u8], now: i64) -> anyhow::Result<Collateral> {
        let quote = Quote::parse(quote).context("parsing the quote to find its platform")?;
        let PcsPlatform { fmspc, ca } = pck::pcs_platform(&quote)?;
        let key = format!("tdx-{fmspc}-{ca}");
        if let Some(c) = self.cached::<Collateral>(&key, now) {
            return Ok(c);
        }
        let base = self.config.pcs_url.trim_end_matches('/');
        let tcb = self
            .get(&format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}"))
            .await?;
        let qe = self
            .get(&format!("{base}/tdx/certification/v4/qe/identity"))
            .await?;
        let pck_crl = self
            .get(&format!(
                "{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"
            ))
            .await?;
        let root_crl = self.get(&self.config.root_crl_url).await?;
        let header = |f: &kokon_fetch::Fetched, names: &[&str]| -> Vec<u8> {
            names
                .iter()
                .find_map(|n| f.headers.get(*n))
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default()
        };
        let collateral = Collateral::from_pcs(&PcsResponses {
            tcb_info: &tcb.body,
            tcb_info_issuer_chain: &header(
                &tcb,
                &[
                    TCB_INFO_ISSUER_CHAIN_HEADER,
                    SGX_TCB_INFO_ISSUER_CHAIN_HEADER,
                ],
            ),
            qe_identity: &qe.body,
            qe_identity_issuer_chain: &header(&qe, &[QE_IDENTITY_ISSUER_CHAIN_HEADER]),
            pck_crl: &pck_crl.body,
            pck_crl_issuer_chain: &header(&pck_crl, &[PCK_CRL_ISSUER_CHAIN_HEADER]),
            root_ca_crl: &root_crl.body,
        })
        .with_context(|| format!("Intel PCS at {base}"))?;
        let tcb_next: TcbInfo = serde_json::from_str(&collateral.tcb_info)?;
        let qe_next: QeIdentity = serde_json::from_str(&collateral.qe_identity)?;
        let until = rfc3339(&tcb_next.next_update)?.min(rfc3339(&qe_next.next_update)?);
        self.store(&key, &collateral, until)?;
        Ok(collateral)
    }

    /// The report's product line and its name in KDS paths.
    fn snp_product(&self, report: &Report) -> anyhow::Result<(AmdProduct, &'static str)> {
        let product = report.product().or(self.config.snp_product).context(
            "the report does not name its product (version 2): set the SNP product line (--snp-product milan, genoa or turin)",
        )?;
        let name = match product {
            AmdProduct::Milan => "Milan",
            AmdProduct::Genoa => "Genoa",
            AmdProduct::Turin => "Turin",
        };
        Ok((product, name))
    }

    /// Bytes from the cache, or fetched from `url` and cached until the time
    /// `until` gives for them (which may also refuse them, uncached).
    async fn fetch_cached(
        &self,
        key: &str,
        url: &str,
        now: i64,
        until: impl Fn(&[u8]) -> anyhow::Result<i64>,
    ) -> anyhow::Result<Vec<u8>> {
        if let Some(bytes) = self.cached::<String>(key, now) {
            return Ok(hex::decode(bytes)?);
        }
        let body = self.get(url).await?.body.to_vec();
        let valid_until = until(&body).with_context(|| format!("GET {url}"))?;
        self.store(key, &hex::encode(&body), valid_until)?;
        Ok(body)
    }

    /// The endorsement key's certificate and its CA chain for an SNP report,
    /// from the cache or AMD KDS. A VCEK is fetched for the report's chip and
    /// reported TCB; a VLEK is not served by KDS and must be the first of
    /// `certificates` (from the host's certificate table), completed with the
    /// ASVK chain.
    pub async fn snp(
        &self,
        report: &[u8],
        certificates: &[Vec<u8>],
        now: i64,
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let report = Report::parse(report).context("parsing the SNP report")?;
        let (product, name) = self.snp_product(&report)?;
        let base = self.config.kds_url.trim_end_matches('/');
        // Certificates are valid for years; refresh daily all the same.
        let daily = |_: &[u8]| Ok(now + 24 * 3600);
        let (kind, leaf) = match report.signing_key()? {
            SigningKey::Vlek => {
                let vlek = certificates.first().context(
                    "a VLEK-signed report needs the VLEK from the host's certificate table (AMD KDS does not serve VLEKs)",
                )?;
                ("vlek", vlek.clone())
            }
            SigningKey::Vcek => {
                let tcb = TcbVersion::decode(report.reported_tcb, product);
                let hw_id = match product {
                    AmdProduct::Turin => hex::encode(report.chip_id.get(..8).unwrap_or_default()),
                    _ => hex::encode(report.chip_id),
                };
                let mut query = format!(
                    "blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
                    tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
                );
                if let Some(fmc) = tcb.fmc {
                    query = format!("fmcSPL={fmc}&{query}");
                }
                let key = format!(
                    "snp-vcek-{name}-{}-{:016x}",
                    hw_id.get(..16).unwrap_or(&hw_id),
                    report.reported_tcb
                );
                let url = format!("{base}/vcek/v1/{name}/{hw_id}?{query}");
                ("vcek", self.fetch_cached(&key, &url, now, daily).await?)
            }
        };
        let chain = self
            .fetch_cached(
                &format!("snp-{kind}-chain-{name}"),
                &format!("{base}/{kind}/v1/{name}/cert_chain"),
                now,
                |pem| match pem_certificates(pem)?.len() {
                    2 => daily(pem),
                    n => bail!("expected 2 certificates (CA and ARK), found {n}"),
                },
            )
            .await?;
        let mut certs = vec![leaf];
        certs.extend(pem_certificates(&chain)?);
        Ok(certs)
    }

    /// AMD's CRL for an SNP report's product line and key kind (KDS
    /// `/vcek/v1/<product>/crl` or `/vlek/v1/<product>/crl`), from the cache
    /// or AMD KDS. Cached until its next update, and for at most a day, so
    /// that a new revocation reaches clients within a day.
    pub async fn snp_crl(&self, report: &[u8], now: i64) -> anyhow::Result<Vec<u8>> {
        let report = Report::parse(report).context("parsing the SNP report")?;
        let (_, name) = self.snp_product(&report)?;
        let kind = match report.signing_key()? {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
        };
        let base = self.config.kds_url.trim_end_matches('/');
        self.fetch_cached(
            &format!("snp-{kind}-crl-{name}"),
            &format!("{base}/{kind}/v1/{name}/crl"),
            now,
            |crl| {
                Ok(crl_next_update(crl)
                    .filter(|next| *next > now)
                    .unwrap_or(now + 3600)
                    .min(now + 24 * 3600))
            },
        )
        .await
    }

    /// NVIDIA's OCSP responses for a GPU's chain (PEM, leaf first), one per
    /// certificate of [`nvidia::OCSP_POSITIONS`] in chain order. The chain
    /// is parsed, not verified: the client verifies the chain and the
    /// responses.
    pub async fn gpu_ocsp(&self, chain_pem: &[u8], now: i64) -> anyhow::Result<Vec<Vec<u8>>> {
        let chain = nvidia::read_chain(chain_pem).context("reading the GPU's chain")?;
        let links = ChainLink::parse_chain(&chain).context("parsing the GPU's chain")?;
        self.chain_ocsp(&links, nvidia::OCSP_POSITIONS, now).await
    }

    /// NVIDIA's OCSP responses for the certificates of `links` (leaf
    /// first) at `positions`, each asked of its issuer's responder, from
    /// the cache or NVIDIA's responder. Each is cached until its next
    /// update, and for at most a day.
    async fn chain_ocsp(
        &self,
        links: &[ChainLink],
        positions: std::ops::Range<usize>,
        now: i64,
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut responses = Vec::new();
        for position in positions {
            let (Some(cert), Some(issuer)) = (links.get(position), links.get(position + 1)) else {
                bail!(
                    "a chain of {} certificates has no certificate {position} with an issuer",
                    links.len()
                );
            };
            let request = ocsp::request(cert, issuer)?;
            let key = format!(
                "nvidia-ocsp-{}-{}",
                hex::encode(&cert.serial),
                hex::encode(ring::digest::digest(&ring::digest::SHA256, &issuer.spki))
                    .get(..16)
                    .unwrap_or_default()
            );
            let url = &self.config.nvidia_ocsp_url;
            if let Some(bytes) = self.cached::<String>(&key, now) {
                responses.push(hex::decode(bytes)?);
                continue;
            }
            let post = http::Request::post(url)
                .header(http::header::CONTENT_TYPE, "application/ocsp-request")
                .body(request.into())
                .with_context(|| format!("bad URL {url}"))?;
            let body = self.send(post).await?.body.to_vec();
            let next = ocsp::next_update(&body, cert, issuer)
                .with_context(|| format!("POST {url} (OCSP, certificate {position})"))?;
            let until = next
                .filter(|next| *next > now)
                .unwrap_or(now + 3600)
                .min(now + 24 * 3600);
            self.store(&key, &hex::encode(&body), until)?;
            responses.push(body);
        }
        Ok(responses)
    }

    /// NVIDIA's reference integrity manifest `id` (see
    /// [`kokon_attestation::nvidia::rim`]), from the cache or NVIDIA's RIM
    /// service (`GET /v1/rim/<id>`, JSON whose `rim` is the signed SWID tag
    /// in base64), cached for a day, with NVIDIA's OCSP answers for its
    /// signing chain when the responder gives them. Nothing is verified
    /// beyond the answer naming `id`: the client verifies the RIM.
    pub async fn gpu_rim(&self, id: &str, now: i64) -> anyhow::Result<GpuRim> {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        {
            bail!("RIM id {id:?}: expected letters, digits, '_', '.' and '-' only");
        }
        let base = self.config.nvidia_rim_url.trim_end_matches('/');
        let url = format!("{base}/v1/rim/{id}");
        let body = self
            .fetch_cached(&format!("nvidia-rim-{id}"), &url, now, |body| {
                rim_document(body, Some(id))?;
                Ok(now + 24 * 3600)
            })
            .await?;
        let rim = rim_document(&body, Some(id)).with_context(|| format!("GET {url}"))?;
        let ocsp = match self.rim_ocsp(&rim, now).await {
            Ok(ocsp) => ocsp,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "OCSP answers for RIM {id} unavailable; relaying it without them");
                Vec::new()
            }
        };
        Ok(GpuRim { rim, ocsp })
    }

    /// NVIDIA's OCSP answers for the signing chain a RIM carries.
    async fn rim_ocsp(&self, rim: &str, now: i64) -> anyhow::Result<Vec<Vec<u8>>> {
        let doc = xmldsig::parse(rim.as_bytes(), "NVIDIA RIM")?;
        let signed = xmldsig::verify_reference(&doc, "NVIDIA RIM")?;
        let links = ChainLink::parse_chain(&signed.certificates)?;
        self.chain_ocsp(&links, rim::OCSP_POSITIONS, now).await
    }

    /// Adds what a bundle lacks: collateral to a TDX quote, the VCEK chain
    /// to an SNP report, NVIDIA's OCSP responses to GPU evidence. A bundle that already has it, or whose collateral
    /// cannot be fetched, is returned as it is (a client whose policy needs
    /// collateral will then reject it, saying why).
    pub async fn complete(&self, bundle: Vec<u8>, now: i64) -> Vec<u8> {
        let Ok(mut parsed) = AttestationBundle::from_json(&bundle) else {
            return bundle;
        };
        let evidence = &mut parsed.evidence;
        let unavailable = |what: &str, e: anyhow::Error| {
            tracing::warn!(error = %format!("{e:#}"), "{what} unavailable; relaying the bundle without it");
        };
        let mut changed = false;
        match evidence.format {
            EvidenceFormat::TdxQuote if evidence.collateral.is_none() => {
                match self.tdx(&evidence.data, now).await {
                    Ok(c) => {
                        evidence.collateral = Some(c);
                        changed = true;
                    }
                    Err(e) => unavailable("TDX collateral", e),
                }
            }
            EvidenceFormat::SnpReport => {
                if evidence.certificates.len() < 3 {
                    match self.snp(&evidence.data, &evidence.certificates, now).await {
                        Ok(c) => {
                            evidence.certificates = c;
                            changed = true;
                        }
                        Err(e) => unavailable("SNP certificate chain", e),
                    }
                }
                if evidence.crl.is_empty() {
                    match self.snp_crl(&evidence.data, now).await {
                        Ok(crl) => {
                            evidence.crl = crl;
                            changed = true;
                        }
                        Err(e) => unavailable("AMD CRL", e),
                    }
                }
            }
            EvidenceFormat::TdxQuote => {}
        }
        let rim_ids: std::collections::BTreeSet<String> = parsed
            .gpu_evidence
            .iter()
            .filter_map(|g| nvidia::Report::parse(&g.report).ok())
            .flat_map(|r| [Some(rim::driver_rim_id(&r)), rim::vbios_rim_id(&r).ok()])
            .flatten()
            .filter(|id| !parsed.gpu_rims.contains_key(id))
            .collect();
        for id in rim_ids {
            match self.gpu_rim(&id, now).await {
                Ok(found) => {
                    parsed.gpu_rims.insert(id, found);
                    changed = true;
                }
                Err(e) => unavailable("NVIDIA RIM", e),
            }
        }
        for gpu in parsed.gpu_evidence.iter_mut().filter(|g| g.ocsp.is_empty()) {
            match self.gpu_ocsp(gpu.chain_pem.as_bytes(), now).await {
                Ok(responses) => {
                    gpu.ocsp = responses;
                    changed = true;
                }
                Err(e) => unavailable("NVIDIA OCSP responses", e),
            }
        }
        match changed {
            true => parsed.to_json(),
            false => bundle,
        }
    }
}

/// The signed SWID tag in an answer of NVIDIA's RIM service: JSON whose
/// `id`, when present and `id` is given, is `id`, and whose `rim` is the
/// document in base64.
pub fn rim_document(body: &[u8], id: Option<&str>) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        id: Option<String>,
        rim: String,
    }
    let answer: Answer = serde_json::from_slice(body).context("not a RIM service answer")?;
    if let (Some(found), Some(id)) = (&answer.id, id) {
        if found != id {
            bail!("the RIM service answered for {found:?}, asked for {id:?}");
        }
    }
    use base64::Engine;
    let xml = base64::engine::general_purpose::STANDARD
        .decode(answer.rim.trim())
        .context("the answer's rim is not base64")?;
    String::from_utf8(xml).context("the RIM is not UTF-8")
}

/// A DER CRL's nextUpdate (Unix seconds), if it parses and has one.
fn crl_next_update(der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).ok()?;
    crl.next_update().map(|t| t.timestamp())
}
