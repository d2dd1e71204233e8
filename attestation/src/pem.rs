//! A strict reader for the PEM certificate chains inside evidence: the PCK
//! chain in a TDX quote's certification data and the issuer chains in Intel's
//! collateral.
//!
//! Why not `x509-parser`'s `Pem` reader: it is lenient, as a reader of files
//! that people edit should be. It skips any text before a `-----BEGIN`,
//! accepts an `-----END` line with any label or a damaged one, ignores what
//! follows the last block, and decodes base64 with whitespace anywhere and
//! non-canonical trailing bits. Inside evidence those bytes are unsigned: a
//! verifier that ignores them lets the same signed certificates travel in
//! many different byte strings, and a quote whose armour was altered would
//! still verify. Here every byte must be exactly what a canonical encoder
//! writes (the form in Intel's quotes and PCS responses, and of
//! [`crate::sim::pem_encode`]):
//!
//! ```text
//! chain = block+
//! block = "-----BEGIN CERTIFICATE-----\n" line* last "-----END CERTIFICATE-----\n"
//! line  = 64 base64 characters "\n"
//! last  = 1 to 64 base64 characters "\n"
//! ```
//!
//! The base64 is the standard alphabet with `=` padding, decoded by the
//! `base64` crate's `STANDARD` engine, which rejects misplaced or missing
//! padding and non-zero trailing bits: one DER certificate has exactly one
//! accepted text. No CR, no blank line, no header, nothing between or after
//! blocks (a caller that knows of a terminator, such as the NUL ending the
//! chain in Intel's quotes, removes it first).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::Error;

/// Largest number of certificates accepted in one chain.
const MAX_CHAIN_LEN: usize = 8;
/// The opening line of a certificate block.
const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----\n";
/// The closing line of a certificate block, without its line feed.
const END: &[u8] = b"-----END CERTIFICATE-----";
/// Characters per base64 line.
const LINE_LEN: usize = 64;
/// How much of the offending text an error shows.
const SHOWN: usize = 40;

/// The text at the start of `rest`, escaped, for messages.
fn shown(rest: &[u8]) -> String {
    match rest.is_empty() {
        true => "the end of the text".into(),
        false => {
            let part = rest.get(..SHOWN.min(rest.len())).unwrap_or_default();
            let more = if rest.len() > SHOWN { "…" } else { "" };
            format!("\"{}{more}\"", part.escape_ascii())
        }
    }
}

fn bad(what: &'static str, offset: usize, expected: &str, found: String) -> Error {
    Error::Pem {
        what,
        offset,
        expected: expected.into(),
        found,
    }
}

fn is_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
}

/// Reads a chain of PEM certificates in the one canonical form (see the
/// module documentation) and returns their DER, in order. `what` names the
/// chain in errors.
pub fn certificates(text: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let rest = text.get(pos..).unwrap_or_default();
        if rest.is_empty() && !out.is_empty() {
            return Ok(out);
        }
        if out.len() == MAX_CHAIN_LEN {
            return Err(Error::TooLarge { what });
        }
        let (der, next) = block(text, pos, what)?;
        out.push(der);
        pos = next;
    }
}

/// Reads the block starting at `start`; returns its DER and where the next
/// block starts.
fn block(text: &[u8], start: usize, what: &'static str) -> Result<(Vec<u8>, usize), Error> {
    let rest = text.get(start..).unwrap_or_default();
    if !rest.starts_with(BEGIN) {
        return Err(bad(
            what,
            start,
            "\"-----BEGIN CERTIFICATE-----\\n\"",
            shown(rest),
        ));
    }
    let mut pos = start + BEGIN.len();
    let mut base64 = Vec::with_capacity(rest.len());
    // Only the last line may be shorter than LINE_LEN.
    let mut last_line_seen = false;
    loop {
        let rest = text.get(pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|b| *b == b'\n') else {
            return Err(bad(
                what,
                pos,
                "a line ending in \\n (base64, then \"-----END CERTIFICATE-----\")",
                shown(rest),
            ));
        };
        let line = rest.get(..len).unwrap_or_default();
        if line == END && !base64.is_empty() {
            pos += len + 1;
            break;
        }
        if line.starts_with(b"-----") || last_line_seen {
            let expected = match base64.is_empty() {
                true => "base64 after \"-----BEGIN CERTIFICATE-----\\n\"",
                false => "\"-----END CERTIFICATE-----\\n\" after the last base64 line",
            };
            return Err(bad(what, pos, expected, shown(rest)));
        }
        if let Some(i) = line.iter().position(|b| !is_base64(*b)) {
            return Err(bad(
                what,
                pos + i,
                "a base64 character (A-Z a-z 0-9 + / =) or \\n",
                shown(rest.get(i..).unwrap_or_default()),
            ));
        }
        if line.is_empty() || line.len() > LINE_LEN {
            return Err(bad(
                what,
                pos,
                "a base64 line of 1 to 64 characters",
                format!("a line of {} characters", line.len()),
            ));
        }
        last_line_seen = line.len() < LINE_LEN;
        base64.extend_from_slice(line);
        pos += len + 1;
    }
    let der = STANDARD.decode(&base64).map_err(|e| {
        bad(
            what,
            start,
            "canonical base64 (standard alphabet, '=' padding only at the end, zero trailing bits)",
            format!("{e} (offset within the block's base64)"),
        )
    })?;
    Ok((der, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pem_encode;

    fn reason(text: &[u8]) -> String {
        certificates(text, "chain").unwrap_err().to_string()
    }

    #[test]
    fn what_the_canonical_encoder_writes_reads_back() {
        for len in [1usize, 2, 3, 47, 48, 49, 96, 500] {
            let der: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let one = pem_encode(&der);
            let two = one.clone() + &one;
            assert_eq!(
                certificates(one.as_bytes(), "x").unwrap(),
                vec![der.clone()]
            );
            assert_eq!(
                certificates(two.as_bytes(), "x").unwrap(),
                vec![der.clone(), der]
            );
        }
    }

    #[test]
    fn anything_else_is_rejected_with_where_and_why() {
        let good = pem_encode(&[0x30, 0x03, 0x02, 0x01, 0x05]);
        assert!(reason(b"").contains("expected \"-----BEGIN CERTIFICATE-----\\n\""));
        assert!(reason(good.replace('\n', "\r\n").as_bytes()).contains("\\r\\n"));
        assert!(reason((good.clone() + "\n").as_bytes()).contains("at byte 63"));
        assert!(reason((good.clone() + "\0").as_bytes()).contains("found \"\\x00\""));
        assert!(
            reason(good.replace("MAMCAQU=", "MAMCAQV=").as_bytes()).contains("canonical base64")
        );
        assert!(reason(good.replace("MAMCAQU=", "MAMCAQU").as_bytes()).contains("canonical base64"));
        assert!(reason(good.replace("END CERT", "END X509 CERT").as_bytes())
            .contains("expected \"-----END CERTIFICATE-----\\n\""));
        assert!(reason(good.trim_end().as_bytes()).contains("a line ending in \\n"));
    }
}
