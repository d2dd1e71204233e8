#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! Chunked OHTTP (draft-ietf-ohai-chunked-ohttp) against the `ohttp` crate's
//! `stream` feature in both directions, then kokon's AES-256-GCM suite,
//! arbitrary splits of the byte stream, truncation and tampering.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kokon_bytes::{peek_varint as get_varint, put_varint};
use kokon_seal::chunked::{encapsulate_chunked, MAX_CHUNK};
use kokon_seal::{KeyConfig, SealError, ServerKey, Suite};
use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{ClientRequest, Server, SymmetricSuite};

const REQ: &[u8] = b"\x02\x04POST\x05https\x05kokon\x14/v1/chat/completions\x00\x00\x00";

/// An async sink whose bytes stay readable after the writer is done.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn pieces() -> Vec<Vec<u8>> {
    vec![
        b"data: {\"a\":1}\n\n".to_vec(),
        Vec::new(),
        vec![7u8; MAX_CHUNK + 5], // split in two chunks
        b"data: [DONE]\n\n".to_vec(),
    ]
}

#[test]
fn an_ohttp_stream_client_talks_to_kokon() {
    let key = ServerKey::derive(3, Suite::Aes128Gcm, &[9; 32]);
    let client = ClientRequest::from_encoded_config(&key.config().encode()).unwrap();
    let sink = Sink::default();
    let mut request = client.encapsulate_stream(sink.clone()).unwrap();
    block_on(async {
        request.write_all(REQ).await.unwrap();
        request.close().await.unwrap();
    });
    let (opened, mut response) = key.decapsulate_chunked(&sink.bytes()).unwrap();
    assert_eq!(&*opened, REQ);
    let mut wire = Vec::new();
    let parts = pieces();
    for (i, piece) in parts.iter().enumerate() {
        wire.extend(response.seal(piece, i + 1 == parts.len()).unwrap());
    }
    let mut reader = request.response(&wire[..]).unwrap();
    let mut plain = Vec::new();
    block_on(reader.read_to_end(&mut plain)).unwrap();
    assert!(plain == parts.concat(), "{} bytes back", plain.len());
}

#[test]
fn kokon_talks_to_an_ohttp_stream_server() {
    let config = ohttp::KeyConfig::new(
        7,
        Kem::X25519Sha256,
        vec![SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm)],
    )
    .unwrap();
    let encoded = config.encode().unwrap();
    let server = Server::new(config).unwrap();
    let (sealed, mut client) =
        encapsulate_chunked(&KeyConfig::parse(&encoded, None).unwrap(), REQ).unwrap();
    let mut request = server.decapsulate_stream(&sealed[..]);
    let mut opened = Vec::new();
    block_on(request.read_to_end(&mut opened)).unwrap();
    assert_eq!(opened, REQ);
    let sink = Sink::default();
    let mut response = request.response(sink.clone()).unwrap();
    block_on(async {
        for piece in pieces() {
            response.write_all(&piece).await.unwrap();
            response.flush().await.unwrap();
        }
        response.close().await.unwrap();
    });
    // Byte by byte, as a slow relay would deliver it.
    let mut plain = Vec::new();
    for b in sink.bytes() {
        for chunk in client.push(&[b]).unwrap() {
            plain.extend_from_slice(&chunk);
        }
    }
    plain.extend_from_slice(&client.finish().unwrap());
    assert!(plain == pieces().concat(), "{} bytes back", plain.len());
}

fn kokon_exchange() -> (Vec<u8>, kokon_seal::chunked::ChunkedClient) {
    let key = ServerKey::derive(1, Suite::Aes256Gcm, &[5; 32]);
    let config = KeyConfig::parse(&key.config().encode(), Some(Suite::Aes256Gcm)).unwrap();
    let (sealed, client) = encapsulate_chunked(&config, &vec![3u8; 2 * MAX_CHUNK + 1]).unwrap();
    let (opened, mut response) = key.decapsulate_chunked(&sealed).unwrap();
    assert_eq!(opened.len(), 2 * MAX_CHUNK + 1);
    let mut wire = Vec::new();
    wire.extend(response.seal(b"first ", false).unwrap());
    wire.extend(response.seal(b"second ", false).unwrap());
    wire.extend(response.seal(b"last", true).unwrap());
    assert!(
        response.seal(b"more", true).is_err(),
        "nothing after the final chunk"
    );
    (wire, client)
}

#[test]
fn aes_256_gcm_chunks_arrive_as_they_are_sealed() {
    let (wire, mut client) = kokon_exchange();
    // Each chunk is readable as soon as its bytes are in, before the end.
    let nonce = 32;
    let (len, used) = get_varint(&wire[nonce..]).unwrap();
    let first = client.push(&wire[..nonce + used + len as usize]).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(&*first[0], b"first ");
    let rest = client.push(&wire[nonce + used + len as usize..]).unwrap();
    assert_eq!(&*rest[0], b"second ");
    assert_eq!(&*client.finish().unwrap(), b"last");
}

#[test]
fn truncation_and_tampering_are_detected() {
    let (wire, mut client) = kokon_exchange();
    // Cut before the final chunk: the chunks so far open, the end does not.
    let cut = wire.len() - (1 + 4 + 16);
    client.push(&wire[..cut]).unwrap();
    assert_eq!(
        client.finish().unwrap_err(),
        SealError::Truncated("response (no final chunk)")
    );
    // A flipped bit in a chunk.
    let (mut wire, mut client) = kokon_exchange();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    client.push(&wire).unwrap();
    assert!(matches!(client.finish(), Err(SealError::Decrypt(_))));
    // A final chunk presented as a non-final one fails (its AAD differs).
    let (wire, mut client) = kokon_exchange();
    let tail = wire.len() - (4 + 16);
    let mut forged = wire[..tail - 1].to_vec();
    put_varint(&mut forged, 20);
    forged.extend_from_slice(&wire[tail..]);
    assert!(client.push(&forged).is_err());
    // An oversized chunk length is refused before anything is buffered.
    let (wire, mut client) = kokon_exchange();
    let mut huge = wire[..32].to_vec();
    put_varint(&mut huge, 1 << 40);
    assert!(client.push(&huge).is_err());
}
