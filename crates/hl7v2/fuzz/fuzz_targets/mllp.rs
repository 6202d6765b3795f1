//! Any bytes, fed to the MLLP decoder in arbitrary chunks: no panic, the buffer stays bounded,
//! and the frames found do not depend on how the input was chunked.
#![no_main]

use bytes::BytesMut;
use hl7v2::{MllpCodec, MllpItem};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

const MAX: usize = 64;

fn run(data: &[u8], cuts: &[usize]) -> Vec<MllpItem> {
    let mut codec = MllpCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut feed = |buf: &mut BytesMut, codec: &mut MllpCodec, chunk: &[u8], out: &mut Vec<MllpItem>| {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec.decode(buf).expect("decode never fails on bytes") {
            out.push(item);
        }
        // Never holds more than one frame limit plus the last chunk and a pending end byte.
        assert!(buf.len() <= MAX + chunk.len() + 2, "buffer {} after chunk {}", buf.len(), chunk.len());
    };
    for &c in cuts {
        let end = (pos + c).min(data.len());
        feed(&mut buf, &mut codec, &data[pos..end], &mut out);
        pos = end;
    }
    feed(&mut buf, &mut codec, &data[pos..], &mut out);
    if let Ok(Some(item)) = codec.decode_eof(&mut buf) {
        out.push(item);
    }
    out
}

fn frames(items: &[MllpItem]) -> Vec<&[u8]> {
    items
        .iter()
        .filter_map(|i| match i {
            MllpItem::Frame(b) => Some(&b[..]),
            _ => None,
        })
        .collect()
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cut_bytes) = input;
    let cuts: Vec<usize> = cut_bytes.iter().map(|&b| usize::from(b % 32) + 1).collect();
    let whole = run(&data, &[]);
    let chunked = run(&data, &cuts);
    assert_eq!(frames(&whole), frames(&chunked));
    for f in frames(&whole) {
        assert!(f.len() <= MAX);
        assert!(!f.contains(&0x0B) && !f.contains(&0x1C));
    }
});
