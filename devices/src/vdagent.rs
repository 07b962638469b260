//! The framing SPICE's guest agent speaks on its virtio-serial port
//! (`com.redhat.spice.0`): a stream of chunks, each `VDIChunkHeader {u32 port,
//! u32 size}` (little-endian) followed by `size` bytes, at most
//! [`MAX_CHUNK`]. Port 1 carries client messages, port 2 the server's
//! (spice-protocol `vd_agent.h`). The payloads are the `VDAgentMessage`
//! stream, which the server relays without parsing.
//!
//! [`ChunkReader`] cuts the guest's bytes (hostile input) into chunks: a chunk
//! announcing more than [`MAX_CHUNK`] bytes is skipped whole, with a log
//! line, as spice-server refuses it; memory stays bounded by one chunk.

use tracing::warn;

/// VDIChunkHeader port of client messages.
pub const PORT_CLIENT: u32 = 1;
/// VDIChunkHeader port of messages for the server itself.
pub const PORT_SERVER: u32 = 2;
/// VD_AGENT_MAX_DATA_SIZE: the largest chunk payload.
pub const MAX_CHUNK: usize = 2048;
const HEADER: usize = 8;
/// VDAgentMessage protocol version.
pub const PROTOCOL: u32 = 1;
/// VD_AGENT_CLIENT_DISCONNECTED.
pub const CLIENT_DISCONNECTED: u32 = 13;

/// A chunk: header then payload.
pub fn chunk(port: u32, payload: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(HEADER + payload.len());
    c.extend_from_slice(&port.to_le_bytes());
    c.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    c.extend_from_slice(payload);
    c
}

/// A whole message with no data (`VDAgentMessage` header only) in one chunk
/// to `port`: what spice-server sends the agent for CLIENT_DISCONNECTED.
pub fn empty_message(port: u32, msg_type: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&PROTOCOL.to_le_bytes());
    m.extend_from_slice(&msg_type.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    chunk(port, &m)
}

enum State {
    Header,
    Payload {
        port: u32,
        size: usize,
    },
    /// Skipping an oversized chunk's bytes.
    Skip(usize),
}

/// Cuts a byte stream into chunks.
pub struct ChunkReader {
    state: State,
    buf: Vec<u8>,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            state: State::Header,
            buf: Vec::with_capacity(MAX_CHUNK),
        }
    }
}

impl ChunkReader {
    /// Feeds `data`; calls `f(port, payload)` for every complete chunk.
    pub fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(u32, &[u8])) {
        while !data.is_empty() {
            match self.state {
                State::Header => {
                    let n = (HEADER - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.buf.len() == HEADER {
                        let port = u32::from_le_bytes([
                            self.buf[0],
                            self.buf[1],
                            self.buf[2],
                            self.buf[3],
                        ]);
                        let size = u32::from_le_bytes([
                            self.buf[4],
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                        ]) as usize;
                        self.buf.clear();
                        self.state = if size > MAX_CHUNK {
                            warn!("vdagent: chunk of {size} bytes (over {MAX_CHUNK}) skipped");
                            State::Skip(size)
                        } else if size == 0 {
                            f(port, &[]);
                            State::Header
                        } else {
                            State::Payload { port, size }
                        };
                    }
                }
                State::Payload { port, size } => {
                    let n = (size - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.buf.len() == size {
                        f(port, &self.buf);
                        self.buf.clear();
                        self.state = State::Header;
                    }
                }
                State::Skip(left) => {
                    let n = left.min(data.len());
                    data = &data[n..];
                    self.state = if left == n {
                        State::Header
                    } else {
                        State::Skip(left - n)
                    };
                }
            }
        }
    }

    /// Forget a partial chunk (the port was closed or reset).
    pub fn reset(&mut self) {
        *self = ChunkReader::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut ChunkReader, data: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        r.feed(data, |p, d| out.push((p, d.to_vec())));
        out
    }

    #[test]
    fn chunks_split_anywhere_come_out_whole() {
        let mut stream = chunk(PORT_CLIENT, b"hello");
        stream.extend(chunk(PORT_SERVER, &[]));
        stream.extend(chunk(PORT_CLIENT, &[9; MAX_CHUNK]));
        for cut in [1, 3, 8, 13, 100, stream.len()] {
            let mut r = ChunkReader::default();
            let mut out = Vec::new();
            for piece in stream.chunks(cut) {
                out.extend(read_all(&mut r, piece));
            }
            assert_eq!(
                out,
                [
                    (PORT_CLIENT, b"hello".to_vec()),
                    (PORT_SERVER, vec![]),
                    (PORT_CLIENT, vec![9; MAX_CHUNK]),
                ],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn oversized_chunks_are_skipped_and_framing_goes_on() {
        let mut r = ChunkReader::default();
        let mut stream = chunk(PORT_CLIENT, &[1; MAX_CHUNK + 1]);
        stream.extend(chunk(PORT_CLIENT, b"ok"));
        assert_eq!(read_all(&mut r, &stream), [(PORT_CLIENT, b"ok".to_vec())]);
        // A huge announced size costs no memory: its bytes are skipped.
        let mut r = ChunkReader::default();
        let mut h = PORT_CLIENT.to_le_bytes().to_vec();
        h.extend(u32::MAX.to_le_bytes());
        assert!(read_all(&mut r, &h).is_empty());
        assert!(read_all(&mut r, &[0; 4096]).is_empty());
        assert!(r.buf.capacity() <= MAX_CHUNK);
        r.reset();
        assert_eq!(read_all(&mut r, &chunk(7, b"x")), [(7, b"x".to_vec())]);
    }

    #[test]
    fn client_disconnected_message() {
        let m = empty_message(PORT_SERVER, CLIENT_DISCONNECTED);
        assert_eq!(m.len(), 28);
        assert_eq!(&m[0..8], &[2, 0, 0, 0, 20, 0, 0, 0]);
        assert_eq!(&m[8..16], &[1, 0, 0, 0, 13, 0, 0, 0]);
    }
}
