//! Chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp), the framing the
//! `ohttp` crate's `stream` feature implements: a request or response is a
//! sequence of AEAD-sealed chunks, each prefixed by its length as a QUIC
//! variable-length integer, the last announced by a zero length and
//! authenticated with the additional data `"final"` (so truncation is
//! detected). Response chunks are sealed one by one as they are produced, so
//! a relay forwards each as soon as it exists.
//!
//! The request is sealed under the HPKE context (info
//! `"message/bhttp chunked request"`), the response under keys derived as in
//! RFC 9458 section 4.4 from the exporter secret `"message/bhttp chunked
//! response"`; chunk `i` uses the base nonce XOR `i`.
//!
//! The decoders take bytes as they arrive, in any split, and never panic.

use aes_gcm::aead::{Aead as _, KeyInit, Nonce, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use hpke::aead::{Aead, AeadCtxR, AeadCtxS, AesGcm128, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use kokon_bytes::{peek_varint as get_varint, put_varint, Reader};
use zeroize::Zeroizing;

use crate::{
    crypto, encapsulated, export, public_key, random, request_info, response_key, truncated, Kem,
    KeyConfig, SealError, Secret, ServerKey, Suite, HEADER_LEN, NN, NPK,
};

const INFO_REQUEST: &[u8] = b"message/bhttp chunked request";
const LABEL_RESPONSE: &[u8] = b"message/bhttp chunked response";
const FINAL_AAD: &[u8] = b"final";
/// The largest chunk plaintext (the `ohttp` crate's limit, for interoperability).
pub const MAX_CHUNK: usize = 1 << 14;
const TAG: usize = 16;

/// The AEAD of one direction of a chunked response, with its chunk counter.
struct ChunkCipher {
    suite: Suite,
    key: Zeroizing<Vec<u8>>,
    base: [u8; NN],
    counter: u64,
}

impl ChunkCipher {
    fn new(secret: &[u8], enc: &[u8], nonce: &[u8], suite: Suite) -> Result<Self, SealError> {
        let (key, base) = response_key(secret, enc, nonce, suite)?;
        Ok(Self {
            suite,
            key,
            base,
            counter: 0,
        })
    }

    fn nonce(&mut self) -> Result<[u8; NN], SealError> {
        let mut nonce = self.base;
        for (i, b) in self.counter.to_be_bytes().iter().enumerate() {
            if let Some(n) = nonce.get_mut(NN - 8 + i) {
                *n ^= b;
            }
        }
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| crypto("chunk counter exhausted"))?;
        Ok(nonce)
    }

    fn seal(&mut self, plain: &[u8], last: bool) -> Result<Vec<u8>, SealError> {
        let nonce = self.nonce()?;
        let nonce = Nonce::<Aes128Gcm>::try_from(&nonce[..]).map_err(crypto)?;
        let payload = Payload {
            msg: plain,
            aad: if last { FINAL_AAD } else { b"" },
        };
        match self.suite {
            Suite::Aes128Gcm => Aes128Gcm::new_from_slice(&self.key)
                .map_err(crypto)?
                .encrypt(&nonce, payload),
            Suite::Aes256Gcm => Aes256Gcm::new_from_slice(&self.key)
                .map_err(crypto)?
                .encrypt(&nonce, payload),
        }
        .map_err(crypto)
    }

    fn open(&mut self, sealed: &[u8], last: bool) -> Result<Vec<u8>, SealError> {
        let nonce = self.nonce()?;
        let nonce = Nonce::<Aes128Gcm>::try_from(&nonce[..]).map_err(crypto)?;
        let payload = Payload {
            msg: sealed,
            aad: if last { FINAL_AAD } else { b"" },
        };
        match self.suite {
            Suite::Aes128Gcm => Aes128Gcm::new_from_slice(&self.key)
                .map_err(crypto)?
                .decrypt(&nonce, payload),
            Suite::Aes256Gcm => Aes256Gcm::new_from_slice(&self.key)
                .map_err(crypto)?
                .decrypt(&nonce, payload),
        }
        .map_err(|_| SealError::Decrypt("response chunk"))
    }
}

/// The enclave's side of one chunked exchange: seals response chunks.
pub struct ChunkedResponse {
    cipher: ChunkCipher,
    nonce: Option<Vec<u8>>,
    finished: bool,
}

impl ChunkedResponse {
    /// Seals the next chunk of the response (at most [`MAX_CHUNK`] bytes;
    /// longer text is split; empty text makes no chunk unless it is the
    /// last), `last` for the final one. The first call's output starts with
    /// the response nonce.
    pub fn seal(&mut self, plain: &[u8], last: bool) -> Result<Vec<u8>, SealError> {
        if self.finished {
            return Err(crypto("the response was already finished"));
        }
        let mut out = self.nonce.take().unwrap_or_default();
        let mut pieces: Vec<&[u8]> = plain.chunks(MAX_CHUNK).collect();
        if pieces.is_empty() {
            if !last {
                // An empty non-final chunk carries nothing, and readers
                // (the `ohttp` crate's) take an empty read for the end.
                return Ok(out);
            }
            pieces.push(&[]);
        }
        let count = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let final_piece = last && i + 1 == count;
            let sealed = self.cipher.seal(piece, final_piece)?;
            put_varint(&mut out, if final_piece { 0 } else { sealed.len() as u64 });
            out.extend_from_slice(&sealed);
        }
        self.finished = last;
        Ok(out)
    }
}

impl ServerKey {
    /// Opens a chunked request (all of it, as received) and returns its
    /// plaintext with the state that seals the chunked response.
    pub fn decapsulate_chunked(
        &self,
        request: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, ChunkedResponse), SealError> {
        let mut r = Reader::new(request);
        let header = r.array::<HEADER_LEN>("request header").map_err(truncated)?;
        self.check_header(header)?;
        let enc = r.take(NPK, "encapsulated key").map_err(truncated)?;
        let chunks = r.rest();
        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc)
            .map_err(|_| SealError::Decrypt("request"))?;
        let info = request_info(INFO_REQUEST, &header);
        let suite = self.config.suite;
        let (plain, secret) = match suite {
            Suite::Aes128Gcm => open_chunks::<AesGcm128>(self, &encapped, &info, chunks, suite)?,
            Suite::Aes256Gcm => open_chunks::<AesGcm256>(self, &encapped, &info, chunks, suite)?,
        };
        let nonce_len = suite.key_len().max(NN);
        let nonce: [u8; 32] = random()?;
        let nonce = nonce
            .get(..nonce_len)
            .ok_or_else(|| crypto("nonce length"))?
            .to_vec();
        Ok((
            plain,
            ChunkedResponse {
                cipher: ChunkCipher::new(&secret, enc, &nonce, suite)?,
                nonce: Some(nonce),
                finished: false,
            },
        ))
    }
}

fn open_chunks<A: Aead>(
    key: &ServerKey,
    encapped: &<Kem as hpke::Kem>::EncappedKey,
    info: &[u8],
    mut chunks: &[u8],
    suite: Suite,
) -> Result<(Secret, Secret), SealError> {
    let mut ctx: AeadCtxR<A, HkdfSha256, Kem> =
        hpke::setup_receiver(&OpModeR::Base, &key.secret, encapped, info)
            .map_err(|_| SealError::Decrypt("request"))?;
    let mut plain = Zeroizing::new(Vec::new());
    loop {
        let (len, used) = get_varint(chunks).ok_or(SealError::Truncated("request chunk length"))?;
        chunks = chunks.get(used..).unwrap_or_default();
        if len == 0 {
            let last = ctx
                .open(chunks, FINAL_AAD)
                .map_err(|_| SealError::Decrypt("request"))?;
            plain.extend_from_slice(&Zeroizing::new(last));
            break;
        }
        let len = usize::try_from(len).map_err(|_| SealError::Truncated("request chunk"))?;
        if len > MAX_CHUNK + TAG {
            return Err(crypto(format!(
                "request chunk of {len} bytes exceeds {}",
                MAX_CHUNK + TAG
            )));
        }
        let sealed = chunks
            .get(..len)
            .ok_or(SealError::Truncated("request chunk"))?;
        chunks = chunks.get(len..).unwrap_or_default();
        let opened = ctx
            .open(sealed, b"")
            .map_err(|_| SealError::Decrypt("request"))?;
        plain.extend_from_slice(&Zeroizing::new(opened));
    }
    let secret = export(|l, o| ctx.export(l, o), LABEL_RESPONSE, suite)?;
    Ok((plain, secret))
}

/// The client's side of one chunked exchange: opens the response as its
/// bytes arrive.
pub struct ChunkedClient {
    secret: Zeroizing<Vec<u8>>,
    enc: Vec<u8>,
    suite: Suite,
    cipher: Option<ChunkCipher>,
    pending: Vec<u8>,
    finished: bool,
}

/// Seals `request` to `config` as a chunked request (one non-final chunk per
/// [`MAX_CHUNK`] bytes, then an empty final chunk).
pub fn encapsulate_chunked(
    config: &KeyConfig,
    request: &[u8],
) -> Result<(Vec<u8>, ChunkedClient), SealError> {
    let pk = public_key(config)?;
    let header = config.header();
    let info = request_info(INFO_REQUEST, &header);
    let (enc, body, secret) = match config.suite {
        Suite::Aes128Gcm => seal_chunks::<AesGcm128>(&pk, &info, request, config.suite)?,
        Suite::Aes256Gcm => seal_chunks::<AesGcm256>(&pk, &info, request, config.suite)?,
    };
    Ok((
        encapsulated(&header, &enc, &body),
        ChunkedClient {
            secret,
            enc,
            suite: config.suite,
            cipher: None,
            pending: Vec::new(),
            finished: false,
        },
    ))
}

type SealedChunks = (Vec<u8>, Vec<u8>, Secret);

fn seal_chunks<A: Aead>(
    pk: &<Kem as hpke::Kem>::PublicKey,
    info: &[u8],
    request: &[u8],
    suite: Suite,
) -> Result<SealedChunks, SealError> {
    let (encapped, mut ctx): (_, AeadCtxS<A, HkdfSha256, Kem>) =
        hpke::setup_sender(&OpModeS::Base, pk, info).map_err(crypto)?;
    let mut body = Vec::with_capacity(request.len() + 64);
    for piece in request.chunks(MAX_CHUNK) {
        let sealed = ctx.seal(piece, b"").map_err(crypto)?;
        put_varint(&mut body, sealed.len() as u64);
        body.extend_from_slice(&sealed);
    }
    body.push(0);
    body.extend_from_slice(&ctx.seal(b"", FINAL_AAD).map_err(crypto)?);
    let secret = export(|l, o| ctx.export(l, o), LABEL_RESPONSE, suite)?;
    Ok((encapped.to_bytes().to_vec(), body, secret))
}

impl ChunkedClient {
    /// Feeds response bytes as they arrive; returns the plaintext of every
    /// chunk they complete. The final chunk is only known at the end of the
    /// stream: call [`ChunkedClient::finish`] then.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Zeroizing<Vec<u8>>>, SealError> {
        if self.finished {
            return Err(crypto("bytes after the final response chunk"));
        }
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.cipher.is_none() {
                let nonce_len = self.suite.key_len().max(NN);
                let Some(nonce) = self.pending.get(..nonce_len) else {
                    return Ok(out);
                };
                self.cipher = Some(ChunkCipher::new(
                    &self.secret,
                    &self.enc,
                    nonce,
                    self.suite,
                )?);
                self.pending.drain(..nonce_len);
            }
            let Some((len, used)) = get_varint(&self.pending) else {
                return Ok(out);
            };
            if len == 0 {
                return Ok(out); // the final chunk runs to the end of the stream
            }
            let len = usize::try_from(len).map_err(|_| SealError::Truncated("response chunk"))?;
            if len > MAX_CHUNK + TAG {
                return Err(crypto(format!(
                    "response chunk of {len} bytes exceeds {}",
                    MAX_CHUNK + TAG
                )));
            }
            let Some(sealed) = self.pending.get(used..used + len) else {
                return Ok(out);
            };
            let cipher = self.cipher.as_mut().ok_or_else(|| crypto("no cipher"))?;
            out.push(Zeroizing::new(cipher.open(sealed, false)?));
            self.pending.drain(..used + len);
        }
    }

    /// The end of the response stream: opens the final chunk (a stream cut
    /// short, without one, is an error: truncation is detected).
    pub fn finish(&mut self) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut rest = self.push(&[])?;
        if !rest.is_empty() {
            return Err(crypto("unconsumed chunks at the end of the response"));
        }
        rest.clear();
        let cipher = self
            .cipher
            .as_mut()
            .ok_or(SealError::Truncated("response (no nonce)"))?;
        let Some((0, used)) = get_varint(&self.pending) else {
            return Err(SealError::Truncated("response (no final chunk)"));
        };
        let sealed = self.pending.get(used..).unwrap_or_default();
        let plain = Zeroizing::new(cipher.open(sealed, true)?);
        self.finished = true;
        self.pending.clear();
        Ok(plain)
    }
}
