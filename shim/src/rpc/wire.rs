//! ttrpc's framing: a 10-byte header (payload length and stream id, big-endian, then the
//! message type and flags) before each message. Frames over 4 MiB are refused, as by
//! containerd's Go ttrpc: their payload is skipped and the stream answered
//! ResourceExhausted.

use containerd_shim_protos::ttrpc::MessageHeader;

pub const HEADER_LEN: usize = 10;
/// The largest payload a frame may carry (Go ttrpc's and the crate's limit).
pub const MAX_PAYLOAD: usize = 4 << 20;
pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;

/// What a connection's bytes held.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Request {
        stream: u32,
        payload: Vec<u8>,
    },
    /// A frame over [`MAX_PAYLOAD`], of `len` bytes; its payload is skipped.
    Oversize {
        stream: u32,
        len: usize,
    },
}

/// Reassembles frames from what each read brings.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Payload bytes of an oversize frame still to skip.
    skip: usize,
}

impl Decoder {
    /// Takes `data` in and appends every frame it completes to `out`. Frames that are
    /// neither requests nor oversize (responses, stream data) are dropped: the shim's
    /// services are unary.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while self.buf.len() - at >= HEADER_LEN {
            let h = MessageHeader::from(&self.buf[at..at + HEADER_LEN]);
            let len = h.length as usize;
            if len > MAX_PAYLOAD {
                out.push(Frame::Oversize {
                    stream: h.stream_id,
                    len,
                });
                at += HEADER_LEN;
                let n = len.min(self.buf.len() - at);
                at += n;
                self.skip = len - n;
                continue;
            }
            if self.buf.len() - at < HEADER_LEN + len {
                break;
            }
            let body = &self.buf[at + HEADER_LEN..at + HEADER_LEN + len];
            if h.type_ == TYPE_REQUEST {
                out.push(Frame::Request {
                    stream: h.stream_id,
                    payload: body.to_vec(),
                });
            }
            at += HEADER_LEN + len;
        }
        self.buf.drain(..at);
        if self.buf.capacity() > 64 * 1024 && self.buf.len() < 1024 {
            // A large frame is done: do not keep its buffer for an idle connection.
            self.buf.shrink_to(1024);
        }
    }
}

/// A response frame for `stream` carrying `payload`.
pub fn response(stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&[TYPE_RESPONSE, 0]);
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend(stream.to_be_bytes());
        f.extend([kind, 0]);
        f.extend(payload);
        f
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut bytes = frame(1, TYPE_REQUEST, b"first");
        bytes.extend(frame(3, TYPE_RESPONSE, b"ignored"));
        bytes.extend(frame(5, TYPE_REQUEST, b""));
        bytes.extend(frame(7, TYPE_REQUEST, &[9; 300]));
        for step in [1, 2, 7, 10, 11, 64, bytes.len()] {
            let mut d = Decoder::default();
            let mut out = Vec::new();
            for chunk in bytes.chunks(step) {
                d.push(chunk, &mut out);
            }
            assert_eq!(
                out,
                vec![
                    Frame::Request {
                        stream: 1,
                        payload: b"first".to_vec()
                    },
                    Frame::Request {
                        stream: 5,
                        payload: Vec::new()
                    },
                    Frame::Request {
                        stream: 7,
                        payload: vec![9; 300]
                    },
                ],
                "read {step} bytes at a time"
            );
            assert!(d.buf.is_empty() && d.skip == 0);
        }
    }

    #[test]
    fn an_oversize_frame_is_skipped_and_the_next_one_read() {
        let len = MAX_PAYLOAD + 1;
        let mut bytes = (len as u32).to_be_bytes().to_vec();
        bytes.extend(9u32.to_be_bytes());
        bytes.extend([TYPE_REQUEST, 0]);
        bytes.resize(HEADER_LEN + len, 0xaa);
        bytes.extend(frame(11, TYPE_REQUEST, b"after"));
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(65536) {
            d.push(chunk, &mut out);
        }
        assert_eq!(
            out,
            vec![
                Frame::Oversize { stream: 9, len },
                Frame::Request {
                    stream: 11,
                    payload: b"after".to_vec()
                },
            ]
        );
        assert!(d.buf.capacity() <= 1024 * 1024, "kept {}", d.buf.capacity());
    }

    #[test]
    fn a_response_frame_reads_back() {
        let f = response(5, b"abc");
        let h = MessageHeader::from(&f[..HEADER_LEN]);
        assert_eq!(
            (h.length, h.stream_id, h.type_, h.flags),
            (3, 5, TYPE_RESPONSE, 0)
        );
        assert_eq!(&f[HEADER_LEN..], b"abc");
    }
}
