//! `loadgen`: drives many RTP and WebRTC participants from one process against Switchboard (or
//! Janus / rtpengine for comparison) and prints one JSON result per run on stdout.
//!
//! ```text
//! loadgen --target switchboard --pid $(pidof switchboard) s2 --rooms 500
//! ```
//!
//! See docs/benchmarks.md for the scenarios and bench/run.py for the runner.

mod engine;
mod media;
mod peers;
mod sb;
mod scenarios;
mod util;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Switchboard load generator")]
struct Cli {
    /// switchboard, janus, rtpengine, or floor (the `kernel-floor` probe: S2 and S3 only).
    #[arg(long, default_value = "switchboard")]
    target: String,
    /// Switchboard's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    api: String,
    /// Janus's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:18088/janus")]
    janus: String,
    /// rtpengine's ng control socket.
    #[arg(long, default_value = "127.0.0.1:22222")]
    ng: SocketAddr,
    /// First port of `kernel-floor` (leg i listens on 127.0.0.1:base+i).
    #[arg(long, default_value_t = 16000)]
    floor_base: u16,
    /// `kernel-floor --shared`: every leg sends to `floor_base`.
    #[arg(long)]
    floor_shared: bool,
    /// PID of the process under test, for CPU time and RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// Directory with the pre-encoded media (bench/media.sh).
    #[arg(long, default_value = "bench/media")]
    media: PathBuf,
    /// Local address of every leg (loopback).
    #[arg(long, default_value = "127.0.0.2")]
    bind_ip: IpAddr,
    /// Seconds of media before the measurement window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Length of the measurement window in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Tag for room and call names (unique per run).
    #[arg(long, default_value = "r")]
    tag: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Fan-out: one publisher to N subscribers.
    S1 {
        #[arg(long, default_value_t = 100)]
        subs: usize,
        /// One VP8 publisher (~1 Mbit/s) instead of Opus.
        #[arg(long)]
        video: bool,
        /// webrtc (str0m clients) or rtp (plain RTP subscribers).
        #[arg(long, default_value = "webrtc")]
        subs_kind: String,
        /// SSRC the Janus VideoRoom remote publisher expects for its m-line 0 (its base SSRC).
        #[arg(long, default_value_t = 1000)]
        janus_ssrc: u32,
        /// Split the subscribers over this many rooms, each with a publisher (Switchboard only).
        #[arg(long, default_value_t = 1)]
        rooms: usize,
    },
    /// 1:1 phone relay: M rooms of two PCMU legs.
    S2 {
        #[arg(long, default_value_t = 100)]
        rooms: usize,
    },
    /// Audio MCU with PCMU legs.
    S3(McuArgs),
    /// Audio MCU with Opus legs.
    S4(McuArgs),
    /// Sequential joins: answer time, time to first media, RSS per phone leg.
    S5 {
        #[arg(long, default_value_t = 200)]
        joins: usize,
        #[arg(long, default_value_t = 200)]
        webrtc_joins: usize,
    },
}

/// S3 and S4 take the same options; only the codec differs.
#[derive(Args, Debug)]
struct McuArgs {
    #[arg(long, default_value_t = 25)]
    legs: usize,
    /// Spread the legs over this many rooms (Switchboard only), `talkers` talking in each.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    #[arg(long, default_value_t = 3)]
    talkers: usize,
    #[arg(long, default_value_t = 12)]
    sample: usize,
    /// Janus AudioBridge mixing rate.
    #[arg(long, default_value_t = 16000)]
    janus_rate: u32,
}

impl McuArgs {
    fn scenario(self, codec: media::Codec) -> scenarios::Mcu {
        let McuArgs { legs, rooms, talkers, sample, janus_rate } = self;
        scenarios::Mcu { legs, rooms, codec, talkers, sample, janus_rate }
    }
}

/// Options every scenario uses.
pub struct Common {
    pub target: String,
    pub api: String,
    pub janus: String,
    pub ng: SocketAddr,
    pub floor_base: u16,
    pub floor_shared: bool,
    pub pid: Option<u32>,
    pub media: PathBuf,
    pub bind_ip: IpAddr,
    pub warmup: f64,
    pub duration: f64,
    pub tag: String,
}

impl Common {
    pub fn pids(&self) -> Vec<u32> {
        self.pid.into_iter().collect()
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    util::init_clocks();
    str0m::crypto::from_feature_flags().install_process_default();
    raise_nofile();
    let c = Common {
        target: cli.target,
        api: cli.api,
        janus: cli.janus,
        ng: cli.ng,
        floor_base: cli.floor_base,
        floor_shared: cli.floor_shared,
        pid: cli.pid,
        media: cli.media,
        bind_ip: cli.bind_ip,
        warmup: cli.warmup,
        duration: cli.duration,
        tag: cli.tag,
    };
    let out = match cli.cmd {
        Cmd::S1 { subs, video, subs_kind, janus_ssrc, rooms } => {
            scenarios::s1(&c, &scenarios::S1 { subs, video, subs_kind, janus_ssrc, rooms })?
        }
        Cmd::S2 { rooms } => scenarios::s2(&c, rooms)?,
        Cmd::S3(a) => scenarios::mcu(&c, &a.scenario(media::Codec::Pcmu))?,
        Cmd::S4(a) => scenarios::mcu(&c, &a.scenario(media::Codec::Opus))?,
        Cmd::S5 { joins, webrtc_joins } => scenarios::s5(&c, joins, webrtc_joins)?,
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// Many legs mean many sockets: lift the soft open-files limit to the hard one.
fn raise_nofile() {
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
