//! MLLP codec behaviour: split reads, several frames per read, garbage, oversize, EOF.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hl7v2::mllp::{MllpStats, frame};
use hl7v2::{MllpCodec, MllpError, MllpItem};
use tokio_util::codec::{Decoder, Encoder, FramedRead};

fn drain(codec: &mut MllpCodec, buf: &mut BytesMut) -> Vec<MllpItem> {
    let mut out = Vec::new();
    while let Some(item) = codec.decode(buf).unwrap() {
        out.push(item);
    }
    out
}

fn f(s: &str) -> MllpItem {
    MllpItem::Frame(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn several_frames_in_one_read() {
    let mut c = MllpCodec::new(1024);
    let mut buf = BytesMut::new();
    for m in ["MSH|a", "MSH|b", "MSH|c"] {
        buf.extend_from_slice(&frame(m.as_bytes()));
    }
    assert_eq!(drain(&mut c, &mut buf), vec![f("MSH|a"), f("MSH|b"), f("MSH|c")]);
    assert_eq!(c.stats(), MllpStats { frames: 3, garbage_bytes: 0, oversized_frames: 0 });
}

#[test]
fn split_reads_byte_by_byte() {
    let mut c = MllpCodec::new(1024);
    let mut wire = frame(b"MSH|^~\\&|one\rPID|1\r");
    wire.extend(frame(b"MSH|two"));
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in wire {
        buf.extend_from_slice(&[b]);
        got.extend(drain(&mut c, &mut buf));
    }
    assert_eq!(got, vec![f("MSH|^~\\&|one\rPID|1\r"), f("MSH|two")]);
}

#[test]
fn end_block_split_from_cr() {
    let mut c = MllpCodec::new(1024);
    let mut buf = BytesMut::from(&b"\x0bMSH|x\x1c"[..]);
    assert!(drain(&mut c, &mut buf).is_empty());
    buf.extend_from_slice(b"\r\x0bMSH|y\x1c\r");
    assert_eq!(drain(&mut c, &mut buf), vec![f("MSH|x"), f("MSH|y")]);
}

#[test]
fn garbage_between_frames_is_reported() {
    let mut c = MllpCodec::new(1024);
    let mut buf = BytesMut::from(&b"noise\x0bMSH|a\x1c\r\r\n\x0bMSH|b\x1c\rjunk!\x0bMSH|c\x1c\r"[..]);
    assert_eq!(
        drain(&mut c, &mut buf),
        vec![MllpItem::Garbage { len: 5 }, f("MSH|a"), f("MSH|b"), MllpItem::Garbage { len: 5 }, f("MSH|c")]
    );
    assert_eq!(c.stats().garbage_bytes, 10);
}

#[test]
fn start_byte_inside_frame_resyncs() {
    let mut c = MllpCodec::new(1024);
    let mut buf = BytesMut::from(&b"\x0bMSH|cut off\x0bMSH|whole\x1c\r"[..]);
    assert_eq!(drain(&mut c, &mut buf), vec![MllpItem::Garbage { len: 12 }, f("MSH|whole")]);
}

#[test]
fn oversize_is_dropped_and_codec_resyncs() {
    let mut c = MllpCodec::new(16);
    let big = vec![b'x'; 10_000];
    let mut wire = frame(&big);
    wire.extend(frame(b"MSH|ok"));
    // Feed in chunks so the decoder sees the frame grow past the limit.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in wire.chunks(700) {
        buf.extend_from_slice(chunk);
        got.extend(drain(&mut c, &mut buf));
        assert!(buf.len() <= 16 + 700, "buffer grew to {}", buf.len());
    }
    assert_eq!(got.len(), 2, "{got:?}");
    match &got[0] {
        MllpItem::Oversized { len, head } => {
            assert_eq!(*len, 10_000);
            assert_eq!(head.len(), 4096);
        }
        other => panic!("expected oversize, got {other:?}"),
    }
    assert_eq!(got[1], f("MSH|ok"));
    assert_eq!(c.stats().oversized_frames, 1);
}

#[test]
fn oversize_in_one_read() {
    let mut c = MllpCodec::new(4);
    let mut buf = BytesMut::from(&frame(b"MSH|too long")[..]);
    buf.extend_from_slice(&frame(b"ok"));
    let got = drain(&mut c, &mut buf);
    assert_eq!(got[0], MllpItem::Oversized { len: 12, head: Bytes::from_static(b"MSH|too long") });
    assert_eq!(got[1], f("ok"));
}

#[test]
fn eof_inside_frame_is_an_error() {
    let mut c = MllpCodec::new(1024);
    let mut buf = BytesMut::from(&b"\x0bMSH|unfinished"[..]);
    assert!(c.decode(&mut buf).unwrap().is_none());
    match c.decode_eof(&mut buf) {
        Err(MllpError::Truncated { len }) => assert_eq!(len, 14),
        other => panic!("{other:?}"),
    }
    // Whitespace after the last frame is not an error.
    let mut c = MllpCodec::new(1024);
    let mut buf = BytesMut::from(&b"\x0bMSH|a\x1c\r\n"[..]);
    assert_eq!(c.decode_eof(&mut buf).unwrap(), Some(f("MSH|a")));
    assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn encoder_frames_and_checks() {
    let mut c = MllpCodec::new(8);
    let mut dst = BytesMut::new();
    c.encode(&b"MSH|x"[..], &mut dst).unwrap();
    assert_eq!(&dst[..], b"\x0bMSH|x\x1c\r");
    assert!(matches!(c.encode(&b"a\x1cb"[..], &mut dst), Err(MllpError::InvalidPayload { byte: 0x1c, offset: 1 })));
    assert!(matches!(c.encode(&b"123456789"[..], &mut dst), Err(MllpError::PayloadTooLarge { .. })));
}

#[tokio::test]
async fn framed_read_over_a_stream() {
    let mut wire = b"garbage".to_vec();
    wire.extend(frame(b"MSH|1"));
    wire.extend(frame(b"MSH|2"));
    let items: Vec<_> = FramedRead::new(&wire[..], MllpCodec::new(64)).collect().await;
    let items: Vec<MllpItem> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(items, vec![MllpItem::Garbage { len: 7 }, f("MSH|1"), f("MSH|2")]);
}
