//! End-to-end: the SPICE agent's path. The vdagent guest
//! (images/guests/programs/src/bin/vdagent.rs) brings up virtio-serial as
//! Linux's virtio_console.c and opens `com.redhat.spice.0` as spice-vdagentd
//! does; a SPICE client (the in-repo test client) then talks to it through the
//! MAIN channel's agent relay: AGENT_CONNECTED at MAIN_INIT, capabilities
//! announced and answered, a 3000-byte message sent as two AGENT_DATA chunks
//! and echoed back byte for byte, and the client's leaving told to the agent
//! (CLIENT_DISCONNECTED). The same on spicebox and on QEMU (`-device
//! virtio-serial -chardev spicevmc,name=vdagent -device virtserialport,
//! name=com.redhat.spice.0`), in the same test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use images::TestImage;
use spice::client::decode::ServerMsg;
use spice::client::{ClientOptions, ClientState, TestClient};
use spice::proto::main_msgc;
use spice::Listen;
use spicebox_tests::tools::{free_port, require_tool};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(20);
const ANNOUNCE_CAPABILITIES: u32 = 6;
const CLIPBOARD: u32 = 4;

fn qemu(disk: &Path, port: u16) -> Command {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-enable-kvm", "-machine", "pc", "-m", "512M", "-nodefaults"])
        .args(["-vga", "qxl", "-display", "none", "-serial", "stdio"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(["-global", "virtio-blk-pci.disable-legacy=on", "-no-reboot"])
        .args([
            "-spice",
            &format!("port={port},addr=127.0.0.1,disable-ticketing=on"),
        ])
        .args(["-device", "virtio-serial-pci,disable-legacy=on"])
        .args(["-chardev", "spicevmc,id=vdagent,name=vdagent"])
        .args([
            "-device",
            "virtserialport,chardev=vdagent,name=com.redhat.spice.0",
        ]);
    cmd
}

/// A VDAgentMessage (protocol 1) with `data`.
fn message(msg_type: u32, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&msg_type.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(data);
    m
}

fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Everything the agent sent the client so far, concatenated.
fn agent_bytes(s: &ClientState) -> Vec<u8> {
    s.agent
        .iter()
        .filter_map(|m| match m {
            ServerMsg::AgentData(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn agent_messages_cross_virtio_serial_on_spicebox_and_qemu() {
    let dir = TempDir::new("vdagent");
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let disk = dir.join(&format!("vdagent-{name}.img"));
        images::write_image(TestImage::Vdagent.bytes(), &disk).unwrap();
        let port = free_port();
        let mut vm = if qemu_run {
            SpiceboxVm::start_command(qemu(&disk, port))
        } else {
            let spice = format!("127.0.0.1:{port}");
            SpiceboxVm::start(
                spicebox!(),
                &[
                    disk.to_str().unwrap(),
                    "-m",
                    "512M",
                    "--spice",
                    &spice,
                    "--disable-ticketing",
                ],
            )
        };
        vm.wait_for(images::VDAGENT_READY_MARKER, BOOT);
        let c = TestClient::connect(
            &Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            ClientOptions {
                channels: vec![],
                ..ClientOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        c.wait(STEP, |s| s.main_init.is_some())
            .unwrap_or_else(|e| panic!("{name}: no MAIN_INIT: {e}"));
        let (connected, tokens) = match c.state().main_init {
            Some(ServerMsg::MainInit {
                agent_connected,
                agent_tokens,
                ..
            }) => (agent_connected, agent_tokens),
            ref other => panic!("{other:?}"),
        };
        assert_eq!(connected, 1, "{name}: the guest's agent is connected");
        assert!(tokens >= 2, "{name}: {tokens} agent tokens");
        c.send_main(main_msgc::AGENT_START, &u32::MAX.to_le_bytes())
            .unwrap();
        // spice-gtk's announce: request = 1, one caps word.
        let announce = message(ANNOUNCE_CAPABILITIES, &[1, 0, 0, 0, 0xff, 0, 0, 0]);
        c.send_main(main_msgc::AGENT_DATA, &announce).unwrap();
        // 3020 bytes: two AGENT_DATA, the header only in the first.
        let big = message(CLIPBOARD, &payload);
        for piece in big.chunks(2048) {
            c.send_main(main_msgc::AGENT_DATA, piece).unwrap();
        }
        let reply = message(ANNOUNCE_CAPABILITIES, &[0; 8]);
        let want: Vec<u8> = reply.iter().chain(&big).copied().collect();
        c.wait(STEP, |s| agent_bytes(s).len() >= want.len())
            .unwrap_or_else(|e| {
                panic!(
                    "{name}: agent sent {} of {} bytes: {e}\n{}",
                    agent_bytes(&c.state()).len(),
                    want.len(),
                    vm.serial_text()
                )
            });
        assert!(agent_bytes(&c.state()) == want, "{name}: echo differs");
        assert!(
            c.state().errors.is_empty(),
            "{name}: {:?}",
            c.state().errors
        );
        c.close();
        vm.wait_for(images::VDAGENT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VDAGENT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        for line in [
            format!(
                "agent-rx port=1 type=6 size=8 sum={:08x}",
                fnv1a32(&[1, 0, 0, 0, 0xff, 0, 0, 0])
            ),
            format!(
                "agent-rx port=1 type=4 size=3000 sum={:08x}",
                fnv1a32(&payload)
            ),
            "agent-rx port=2 type=13 size=0".to_owned(),
        ] {
            assert!(serial.contains(&line), "{name}: no {line:?}\n{serial}");
        }
    }
}
