//! MLLP framing (`0x0B` message `0x1C 0x0D`) as a tokio codec.
//!
//! Framing is kept apart from parsing: a frame is bytes, checked later. The decoder never
//! buffers without bound: a frame over the limit is discarded as it streams in (only its
//! first bytes are kept, so the caller can still read MSH and send a NAK) and the decoder
//! resynchronises on the next end or start byte. Bytes outside frames are skipped and
//! reported as [`MllpItem::Garbage`], never silently (whitespace between frames excepted).
//! These conditions are items, not errors, because a `FramedRead` stream ends at its first
//! error and a noisy sender should not lose its connection over one bad frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Start block.
pub const SB: u8 = 0x0B;
/// End block.
pub const EB: u8 = 0x1C;
/// Carriage return after the end block.
pub const CR: u8 = 0x0D;

/// How many leading bytes of an oversized frame are kept for a NAK.
pub const OVERSIZE_HEAD: usize = 4096;

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MllpItem {
    /// A complete frame's payload, without the framing bytes.
    Frame(Bytes),
    /// Bytes outside any frame (or an unterminated frame cut off by a new start byte) were
    /// skipped.
    Garbage { len: usize },
    /// A frame longer than the limit was discarded; `head` holds its first bytes.
    Oversized { len: usize, head: Bytes },
}

impl MllpItem {
    /// The payload if this is a frame.
    pub fn into_frame(self) -> Option<Bytes> {
        match self {
            MllpItem::Frame(b) => Some(b),
            _ => None,
        }
    }
}

/// Errors from the codec.
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended inside a frame.
    #[error("connection closed inside an MLLP frame after {len} bytes (no 0x1C 0x0D end)")]
    Truncated { len: usize },
    /// A payload to send contains a framing byte.
    #[error("payload contains MLLP framing byte 0x{byte:02X} at offset {offset}")]
    InvalidPayload { byte: u8, offset: usize },
    /// A payload to send is over the frame limit.
    #[error("payload of {len} bytes is over the frame limit of {max}")]
    PayloadTooLarge { len: usize, max: usize },
}

#[derive(Debug, Clone)]
enum State {
    Idle,
    /// Inside a frame; `scanned` bytes of the payload were already searched.
    InFrame {
        scanned: usize,
    },
    /// Dropping an oversized frame.
    Discarding {
        len: usize,
        head: BytesMut,
    },
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MllpStats {
    pub frames: u64,
    pub garbage_bytes: u64,
    pub oversized_frames: u64,
}

/// The MLLP codec.
#[derive(Debug, Clone)]
pub struct MllpCodec {
    max_frame: usize,
    state: State,
    stats: MllpStats,
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'\r' | b'\n' | b' ' | b'\t'))
}

impl MllpCodec {
    /// A codec accepting frames of up to `max_frame_bytes` payload bytes.
    pub fn new(max_frame_bytes: usize) -> Self {
        MllpCodec { max_frame: max_frame_bytes.max(1), state: State::Idle, stats: MllpStats::default() }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame
    }

    pub fn stats(&self) -> MllpStats {
        self.stats
    }

    fn garbage(&mut self, len: usize) -> MllpItem {
        self.stats.garbage_bytes += len as u64;
        MllpItem::Garbage { len }
    }

    fn oversized(&mut self, len: usize, head: BytesMut) -> MllpItem {
        self.stats.oversized_frames += 1;
        MllpItem::Oversized { len, head: head.freeze() }
    }
}

/// Keeps up to [`OVERSIZE_HEAD`] bytes of a discarded frame.
fn keep_head(head: &mut BytesMut, more: &[u8]) {
    let room = OVERSIZE_HEAD.saturating_sub(head.len());
    head.extend_from_slice(&more[..room.min(more.len())]);
}

impl Decoder for MllpCodec {
    type Item = MllpItem;
    type Error = MllpError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        loop {
            match std::mem::replace(&mut self.state, State::Idle) {
                State::Idle => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    match memchr::memchr(SB, buf) {
                        Some(0) => {
                            buf.advance(1);
                            self.state = State::InFrame { scanned: 0 };
                        }
                        Some(p) => {
                            let blank = is_blank(&buf[..p]);
                            buf.advance(p);
                            if !blank {
                                return Ok(Some(self.garbage(p)));
                            }
                        }
                        None => {
                            let n = buf.len();
                            let blank = is_blank(buf);
                            buf.clear();
                            if !blank {
                                return Ok(Some(self.garbage(n)));
                            }
                            return Ok(None);
                        }
                    }
                }
                State::InFrame { scanned } => {
                    let hit = memchr::memchr2(EB, SB, &buf[scanned..]).map(|p| scanned + p);
                    match hit {
                        Some(i) if buf[i] == EB => {
                            if i > self.max_frame {
                                let head = buf.split_to(OVERSIZE_HEAD.min(i));
                                buf.advance(i - head.len());
                                self.state = State::Discarding { len: i, head };
                                continue;
                            }
                            if i + 1 == buf.len() {
                                // Need the byte after 0x1C.
                                self.state = State::InFrame { scanned: i };
                                return Ok(None);
                            }
                            let frame = buf.split_to(i).freeze();
                            buf.advance(1);
                            if buf.first() == Some(&CR) {
                                buf.advance(1);
                            }
                            self.stats.frames += 1;
                            return Ok(Some(MllpItem::Frame(frame)));
                        }
                        Some(i) => {
                            // A new start byte before the end: the frame was cut off.
                            buf.advance(i);
                            return Ok(Some(self.garbage(i + 1)));
                        }
                        None => {
                            if buf.len() > self.max_frame {
                                let len = buf.len();
                                let head = buf.split_to(OVERSIZE_HEAD.min(len));
                                buf.clear();
                                self.state = State::Discarding { len, head };
                                continue;
                            }
                            self.state = State::InFrame { scanned: buf.len() };
                            buf.reserve(1024);
                            return Ok(None);
                        }
                    }
                }
                State::Discarding { len, mut head } => match memchr::memchr2(EB, SB, buf) {
                    Some(i) if buf[i] == EB => {
                        keep_head(&mut head, &buf[..i]);
                        buf.advance(i + 1);
                        if buf.first() == Some(&CR) {
                            buf.advance(1);
                        }
                        return Ok(Some(self.oversized(len + i, head)));
                    }
                    Some(i) => {
                        keep_head(&mut head, &buf[..i]);
                        buf.advance(i);
                        return Ok(Some(self.oversized(len + i, head)));
                    }
                    None => {
                        let n = buf.len();
                        keep_head(&mut head, buf);
                        buf.clear();
                        self.state = State::Discarding { len: len + n, head };
                        return Ok(None);
                    }
                },
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Ok(None),
            State::InFrame { .. } => {
                let len = buf.len();
                buf.clear();
                Err(MllpError::Truncated { len })
            }
            State::Discarding { len, head } => Ok(Some(self.oversized(len, head))),
        }
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), MllpError> {
        let payload = item.as_ref();
        if payload.len() > self.max_frame {
            return Err(MllpError::PayloadTooLarge { len: payload.len(), max: self.max_frame });
        }
        if let Some(offset) = memchr::memchr2(SB, EB, payload) {
            return Err(MllpError::InvalidPayload { byte: payload[offset], offset });
        }
        dst.reserve(payload.len() + 3);
        dst.put_u8(SB);
        dst.put_slice(payload);
        dst.put_u8(EB);
        dst.put_u8(CR);
        Ok(())
    }
}

/// Wraps one payload in MLLP framing (no checks; see the [`Encoder`] impl for checked use).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 3);
    v.push(SB);
    v.extend_from_slice(payload);
    v.push(EB);
    v.push(CR);
    v
}
