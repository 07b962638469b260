//! A tshark capture of one SPICE server port on lo, and the reads the tests
//! make of it: SPICE messages decoded by Wireshark's dissector, and the check
//! that none of the connections to the server decoded as malformed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::{require_tool, run_timeout};
use crate::usb_peer::STEP;
use crate::xvfb::Guard;
use crate::TempDir;

/// A running capture of `port` on lo into `pcap`.
pub struct Capture {
    tshark: Guard,
    pub pcap: PathBuf,
    port: u16,
}

impl Capture {
    /// Starts tshark on lo for `port` (file `<name>.pcapng` in `dir`) and
    /// waits until it captures.
    pub fn start(dir: &TempDir, port: u16, name: &str) -> Capture {
        require_tool("tshark", "tshark");
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
        assert_eq!(uid, 0, "capturing on lo needs root");
        let pcap = dir.join(&format!("{name}.pcapng"));
        let log = dir.join(&format!("{name}.tshark.log"));
        let mut cmd = Command::new("tshark");
        cmd.args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        let mut tshark = Guard::spawn(cmd, "tshark");
        let deadline = Instant::now() + STEP;
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Capturing on")
        {
            tshark.check_alive();
            assert!(Instant::now() < deadline, "tshark did not start capturing");
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture { tshark, pcap, port }
    }

    /// Lets the last packets arrive, then stops tshark (SIGINT, so it writes
    /// out its file) and waits for it.
    pub fn stop(&mut self) {
        std::thread::sleep(Duration::from_millis(500));
        let pid = self.tshark.pid().to_string();
        let kill = run_timeout(
            {
                let mut c = Command::new("kill");
                c.args(["-INT", &pid]);
                c
            },
            STEP,
        );
        assert!(kill.status.success(), "kill -INT tshark failed");
        let deadline = Instant::now() + STEP;
        while self.tshark.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "tshark did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The packets matching the display `filter`, decoded as SPICE on the
    /// server's port: one line each, or with `fields` only the protocol and
    /// info columns.
    pub fn read(&self, filter: &str, fields: bool) -> String {
        let columns = [
            "-T",
            "fields",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "_ws.col.Info",
        ];
        self.decoded(filter, if fields { &columns } else { &[] })
    }

    /// tshark's output for the packets matching the display `filter`, read
    /// back from the capture with the server's port decoded as SPICE, and
    /// `extra` options (output format, fields).
    fn decoded(&self, filter: &str, extra: &[&str]) -> String {
        let decode_as = format!("tcp.port=={},spice", self.port);
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(&self.pcap)
            .args(["-d", &decode_as, "-Y", filter])
            .args(extra);
        let out = run_timeout(cmd, STEP);
        assert!(
            out.status.success(),
            "tshark -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's messages in `streams`, in order: each one's type
    /// number and, for those with a clip (draws, STREAM_CREATE, STREAM_CLIP),
    /// its clip type, as Wireshark's dissector reads them (`-V`: a
    /// message's fields follow its type line).
    pub fn server_messages(&self, streams: &[String]) -> Vec<(u16, Option<u8>)> {
        let filter = format!(
            "spice && tcp.srcport == {} && tcp.stream in {{{}}}",
            self.port,
            streams.join(", ")
        );
        let verbose = self.decoded(&filter, &["-V"]);
        // "Message type: STREAM_CLIP (124)", "Clip type: RECTS (1)": the
        // number in the last parentheses.
        let number = |l: &str| -> Option<u32> {
            let open = l.rfind('(')?;
            l[open + 1..].strip_suffix(')')?.parse().ok()
        };
        let mut msgs: Vec<(u16, Option<u8>)> = Vec::new();
        for line in verbose.lines() {
            let l = line.trim();
            if l.starts_with("Message type:") {
                if let Some(t) = number(l) {
                    msgs.push((t as u16, None));
                }
            } else if l.starts_with("Clip type:") {
                if let (Some(last), Some(c)) = (msgs.last_mut(), number(l)) {
                    last.1.get_or_insert(c as u8);
                }
            }
        }
        msgs
    }

    /// Every value of the SPICE `field` (e.g. `spice.image_type`) in the
    /// packets matching `filter`, in capture order: a packet carrying
    /// several messages gives one value for each.
    pub fn values(&self, filter: &str, field: &str) -> Vec<String> {
        let fields = [
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            "-e",
            field,
        ];
        self.decoded(filter, &fields)
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The `tcp.stream` numbers of the packets matching `filter`, sorted.
    pub fn stream_ids(&self, filter: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .decoded(filter, &["-T", "fields", "-e", "tcp.stream"])
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The streams of connections to the server captured from their SYN.
    /// Only these can be judged: the dissector tells link messages from data
    /// by a stream's start, and a concurrent test's client may use this port
    /// number as its own (ephemeral) end of a connection to another VM, which
    /// the capture filter also matches.
    pub fn opened_streams(&self) -> Vec<String> {
        let opened = format!(
            "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == {}",
            self.port
        );
        let streams = self.stream_ids(&opened);
        assert!(!streams.is_empty(), "no connection to the server captured");
        streams
    }

    /// Panics if any packet of `streams` decoded as malformed or as a SPICE
    /// error.
    pub fn assert_well_formed(&self, streams: &[String]) {
        let judged = format!(
            "(_ws.malformed || _ws.expert.severity == error) && tcp.stream in {{{}}}",
            streams.join(", ")
        );
        let bad = self.read(&judged, true);
        if !bad.trim().is_empty() {
            // Keep what is needed to tell a dissector gap from our bytes.
            let hex = self.decoded(&judged, &["-x"]);
            panic!("malformed or erroneous SPICE packets:\n{bad}\n{hex}\nstreams: {streams:?}");
        }
    }
}
