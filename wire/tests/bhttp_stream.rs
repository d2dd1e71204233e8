#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The streamed Binary HTTP encoder against the `bhttp` crate: what kokon
//! writes in parts is one valid indeterminate-length response, and what the
//! `bhttp` crate writes in that mode decodes part by part.

use std::io::Cursor;

use bhttp::{Message, Mode, StatusCode};
use kokon_wire::bhttp_stream::{content_chunk, response_end, response_head, Part, ResponseDecoder};

#[test]
fn kokon_parts_are_one_message_for_bhttp() {
    let mut wire = response_head(200, &[("content-type", b"text/event-stream")]);
    wire.extend(content_chunk(b"data: 1\n\n"));
    wire.extend(content_chunk(b"data: [DONE]\n\n"));
    wire.extend(response_end(&[("kokon-receipt", b"{}")]));
    let m = Message::read_bhttp(&mut Cursor::new(&wire[..])).unwrap();
    assert_eq!(m.control().status().map(u16::from), Some(200));
    assert_eq!(
        m.header().get(b"content-type"),
        Some(&b"text/event-stream"[..])
    );
    assert_eq!(m.content(), b"data: 1\n\ndata: [DONE]\n\n");
    assert_eq!(m.trailer().get(b"kokon-receipt"), Some(&b"{}"[..]));
}

#[test]
fn a_bhttp_indeterminate_response_decodes_part_by_part() {
    let mut m = Message::response(StatusCode::try_from(200u16).unwrap());
    m.put_header("content-type", "application/json");
    m.write_content(b"{\"ok\":true}");
    let mut wire = Vec::new();
    m.write_bhttp(Mode::IndeterminateLength, &mut wire).unwrap();
    let mut decoder = ResponseDecoder::default();
    let mut parts = Vec::new();
    for b in &wire {
        parts.extend(decoder.push(&[*b]).unwrap());
    }
    decoder.finish().unwrap();
    let content: Vec<u8> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Content(c) => Some(c.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(content, b"{\"ok\":true}");
    assert!(
        matches!(&parts[0], Part::Head { status: 200, headers } if headers[0].0 == "content-type")
    );
    assert!(matches!(parts.last(), Some(Part::Trailers(t)) if t.is_empty()));
}
