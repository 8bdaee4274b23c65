//! Integration-test harness for the Switchboard daemon.
//!
//! It starts the real `switchboard` binary with a generated config on ports nobody else uses,
//! talks to its HTTP API, follows its SSE event stream, runs real peers (GStreamer webrtcbin
//! through Python, headless Chromium through node + playwright-core) and analyses received audio.
//!
//! Nothing here is mocked: a test that uses this crate exercises the daemon over real sockets.
//!
//! Environment:
//! - `SWITCHBOARD_BIN`: the daemon binary (default `<workspace>/target/debug/switchboard`).
//! - `SWITCHBOARD_PYTHON`: the python for the GStreamer peer (default `/usr/bin/python3`,
//!   Debian's, which has `gi` and `numpy`).
//! - `SWITCHBOARD_IT_KEEP=1`: keep each daemon's temp dir (config + log) and print its path.
//!
//! Each module holds one idea; everything a test uses is re-exported here, so a test file needs
//! only `use switchboard_integration_tests::*;`.

#![allow(unsafe_code, reason = "flock and kill through libc, on our own lock files and children")]

mod audio;
mod churn;
mod clock;
mod config;
mod daemon;
#[cfg(test)]
mod fake_server;
mod flood;
mod g711;
mod http;
mod kamailio;
mod media_files;
mod metrics;
mod ng;
mod nginx_rtmp;
mod paths;
mod pcap;
mod peers;
pub mod phone_legs;
mod ports;
mod proc_stats;
mod process;
mod prometheus;
mod redis_server;
mod rooms;
mod sdp;
mod sipp;
mod sse;
mod tokens;
mod webhook_receiver;

pub use serde_json::{json, Value};

pub use audio::{band_energy_db, dominant_frequency, rms, sine, sine_dbfs, tone_level_db};
pub use churn::{answer_port, churn_offer, join_retrying, pcmu_packet, LegKind, CHURN_KINDS};
pub use clock::{poll_until, unix_now, UnixClock};
pub use config::{test_workers, Config};
pub use daemon::Daemon;
pub use flood::{start_flood, FloodPlan, FloodReport, FLOOD_KINDS};
pub use g711::{alaw_decode, alaw_encode, pcmu_payload_samples, pcmu_tone_packets, ulaw_decode, ulaw_encode};
pub use http::{
    delete, get_json, http_call, http_call_as, patch_json, post_json, raw_http, raw_http_with, RawResponse,
};
pub use kamailio::{kamailio_config, require_sip_tools, Kamailio};
pub use media_files::{decoded_audio, decoded_video, ffprobe, media_duration, require_ffprobe};
pub use metrics::metric_value;
pub use ng::{bdict, blist, bstr, ng_int, ng_text, Ng, NgReply};
pub use nginx_rtmp::{require_nginx_rtmp, NginxRtmp};
pub use paths::{crate_dir, daemon_bin, fixture, peer_script, python, workspace_root};
pub use pcap::write_udp_pcap;
pub use peers::{peer, require_chromium, require_gstreamer, spawn_peer, PeerHandle, PeerOutput};
pub use phone_legs::{
    assert_leg_heard, assert_one_stream, leg_audio_between, leg_heard_all, leg_joined_at, legs_together, read_s16le,
    received_tail, require_rtp_leg, spawn_tone_legs, tone_leg_args, RTP_LEG,
};
pub use ports::{reserve_ports, PortBlock, PORT_BLOCK, WEBRTC_PORTS};
pub use proc_stats::{
    clock_ticks_per_second, proc_sample, thread_sched, udp_sockets, ProcSample, SchedSample, UdpSocketStat,
};
pub use prometheus::{json_exprs, monitoring_file, promql_metric_names, require_tool, served_metric_names, PromServer};
pub use redis_server::RedisServer;
pub use rooms::{assert_api_error, participant_ids, JOIN_WAIT};
pub use sdp::{assert_webrtc_answer, pcmu_dtmf_offer, pcmu_offer, MediaSection, Sdp};
pub use sipp::{sip_body, sipp_messages, Sipp};
pub use sse::{event_participant_id, SseClient, SseEvent};
pub use tokens::{admin_token, sign, token, TEST_KID, TEST_SECRET, TOKEN_ENV};
pub use webhook_receiver::{closed_port_url, WebhookPost, WebhookReceiver};
