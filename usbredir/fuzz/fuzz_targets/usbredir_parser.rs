//! Hostile usbredir streams into both roles. The first two bytes pick our and the
//! peer's capabilities and the third a chunk size, so that every negotiated header
//! layout and every split of the stream is reached. Whatever the bytes: no panic,
//! never more than one packet buffered, and every accepted packet re-encodes to
//! bytes that parse back to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use usbredir::{Caps, Limits, Packet, Parser, Role};

const LIMITS: Limits = Limits { max_packet: 64 * 1024 };

fn run(role: Role, ours: u8, peer: u8, chunk: usize, stream: &[u8]) {
    let mut parser = Parser::new(role, Caps(u32::from(ours)), LIMITS);
    let other_role = match role {
        Role::Guest => Role::Host,
        Role::Host => Role::Guest,
    };
    // The peer's hello, so that later packets use the negotiated sizes.
    let mut peer_parser = Parser::new(other_role, Caps(u32::from(peer)), LIMITS);
    parser.feed(&peer_parser.hello("fuzz"));
    peer_parser.feed(&parser.hello("fuzz"));
    let _ = parser.next();
    let _ = peer_parser.next();
    for piece in stream.chunks(chunk) {
        parser.feed(piece);
        while let Some(result) = parser.next() {
            let Ok(received) = result else { continue };
            if matches!(received.packet, Packet::Hello { .. }) {
                continue;
            }
            // What we accepted, the peer could have sent: re-encode on its side.
            let bytes = peer_parser
                .encode(received.id, &received.packet)
                .expect("an accepted packet re-encodes");
            let mut again = Parser::new(role, Caps(u32::from(ours)), LIMITS);
            again.feed(&peer_parser.hello("fuzz"));
            let _ = again.next();
            again.feed(&bytes);
            let back = again.next().expect("whole packet").expect("parses back");
            assert_eq!(back.packet, received.packet);
        }
        assert!(parser.buffered() <= LIMITS.max_packet as usize + 16 + piece.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let [ours, peer, chunk, stream @ ..] = data else { return };
    let chunk = usize::from(*chunk).max(1);
    run(Role::Guest, *ours, *peer, chunk, stream);
    run(Role::Host, *ours, *peer, chunk, stream);
});
