//! Configuration: TOML file, then `SWITCHBOARD_SECTION__KEY` environment variables, then CLI
//! flags. Unknown keys and bad values fail at start-up with the key named.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub webrtc: WebrtcConfig,
    pub rtp: RtpConfig,
    pub media: MediaConfig,
    pub rooms: RoomsConfig,
    pub mixer: MixerConfig,
    pub log: crate::logging::LogConfig,
    pub debug: DebugConfig,
    pub auth: crate::auth::AuthConfig,
    pub metrics: MetricsConfig,
    pub node: crate::limits::NodeConfig,
    pub ng: crate::ng::NgConfig,
    pub cluster: crate::cluster::ClusterConfig,
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    pub egress: crate::egress::EgressConfig,
}

/// `[metrics]`: where Prometheus scrapes. On the API address `/metrics` needs an admin token;
/// `listen` gives it an address of its own with no token, for a private scrape network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Request bodies above this get 413 `body_too_large`.
    pub max_body_bytes: usize,
    /// A client that has not sent its request headers this long after connecting is cut off.
    pub header_timeout_secs: u64,
    /// A request with no answer this long gets 503 `timeout` (an event stream: until it starts).
    pub request_timeout_secs: u64,
    /// Open HTTP connections at most; past it new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a request waits on the media thread before it is answered 503 `busy`.
    pub command_timeout_ms: u64,
    /// Origins whose pages may call the API from a browser (CORS), e.g. a WHIP publisher page;
    /// `["*"]` for any. Empty (the default): no CORS headers at all.
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    /// The one UDP socket every WebRTC participant shares.
    pub listen: SocketAddr,
    /// Addresses put in the answer's host candidates, with the listen port.
    pub advertised_ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    pub bind_ip: IpAddr,
    pub advertised_ip: IpAddr,
    /// Each leg takes an even port and the odd one above it (RTCP).
    pub port_min: u16,
    pub port_max: u16,
    /// Latch the send address to where media comes from (symmetric RTP).
    pub symmetric: bool,
    /// CIDRs a plain/SDES peer's media address (SDP or latched) must fall in. The default takes
    /// any unicast peer; a carrier-facing node names its gateways' networks.
    pub allowed_peers: Vec<String>,
    /// How long a released leg port pair rests before it is handed out again, so a late packet
    /// of one call never reaches the next.
    pub port_quarantine_secs: u64,
    /// Kernel receive and send buffer asked for on each leg socket (capped by
    /// net.core.rmem_max / wmem_max): what a flooded leg port holds while the media thread waits
    /// for a CPU.
    pub socket_buffer_bytes: usize,
    /// In-kernel forwarding of two-party plain-RTP calls (docs/sip-gateway.md): `auto` uses it
    /// where it can and falls back to user space, `off` never loads it.
    pub kernel_forwarding: KernelForwarding,
    /// The interface whose ingress the forwarding program attaches to; empty: `lo` when
    /// `bind_ip` is a loopback address (elsewhere it must be named).
    pub kernel_interface: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KernelForwarding {
    Auto,
    #[default]
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// A participant that sends nothing for this long is closed.
    pub inactivity_timeout_secs: u64,
    /// Kernel buffer asked for each way on the shared WebRTC socket (capped by
    /// net.core.rmem_max / wmem_max).
    pub socket_buffer_bytes: usize,
    /// Under load, how long a media worker lets datagrams gather before it reads again;
    /// 0 turns it off. See docs/configuration.md.
    pub coalesce_us: u64,
    /// Media worker threads; 0 (the default) is one per core. See `Config::worker_count`.
    pub workers: usize,
    /// Pins worker i to the i-th core the process may run on.
    pub pin_workers: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Create a room when someone joins a room that does not exist.
    pub auto_create: bool,
    pub max_participants: usize,
    /// The most `POST /v1/rooms` may set as a room's `max_participants`.
    pub max_participants_cap: usize,
    /// Event streams (SSE) open on one room at most; past it 429 `too_many_listeners`.
    pub max_event_listeners: usize,
    /// An empty room is removed after this long.
    pub empty_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MixerConfig {
    /// How many of the loudest speakers a mix carries.
    pub speakers: usize,
    /// Minimum and initial playout delay of each input's adaptive jitter buffer.
    pub jitter_buffer_ms: u32,
    /// Maximum playout delay the jitter buffers may grow to under jitter.
    pub jitter_buffer_max_ms: u32,
    /// The video composite's picture: size, frame rate and each encoder's bitrate.
    pub composite_width: u32,
    pub composite_height: u32,
    pub composite_fps: u32,
    pub composite_kbps: u32,
}

/// Hooks for tests that attack the daemon. Never on in production: each one lets an API caller
/// hurt the node on purpose.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// `POST /v1/debug/stall` with `{"ms": N}` (at most 10,000) makes the media thread sleep,
    /// so a test can see `/healthz` notice.
    pub stall_hook: bool,
}

/// A sanity bound on `media.workers`: far more than any machine's cores, well below what would
/// run the node out of threads.
const MAX_WORKERS: usize = 1024;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::new(LOOPBACK, 8080),
            max_body_bytes: 256 * 1024,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 1024,
            command_timeout_ms: 2000,
            cors_origins: Vec::new(),
        }
    }
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig { listen: SocketAddr::new(LOOPBACK, 3478), advertised_ips: vec![LOOPBACK] }
    }
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            bind_ip: LOOPBACK,
            advertised_ip: LOOPBACK,
            port_min: 40000,
            port_max: 40999,
            symmetric: true,
            allowed_peers: vec!["0.0.0.0/0".into(), "::/0".into()],
            port_quarantine_secs: 10,
            socket_buffer_bytes: 1 << 20,
            kernel_forwarding: KernelForwarding::Off,
            kernel_interface: String::new(),
        }
    }
}

impl RtpConfig {
    /// `allowed_peers` parsed; the message names the entry that is not a CIDR.
    pub fn allowed_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.allowed_peers
            .iter()
            .map(|s| s.trim().parse().map_err(|_| format!("{s:?} is not a CIDR such as \"10.0.0.0/8\" or \"::/0\"")))
            .collect()
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            inactivity_timeout_secs: 30,
            socket_buffer_bytes: 4 << 20,
            coalesce_us: 500,
            workers: 0,
            pin_workers: false,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            auto_create: true,
            max_participants: 100,
            max_participants_cap: 1000,
            max_event_listeners: 64,
            empty_timeout_secs: 60,
        }
    }
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            speakers: 3,
            jitter_buffer_ms: 20,
            jitter_buffer_max_ms: 200,
            composite_width: 640,
            composite_height: 360,
            composite_fps: 15,
            composite_kbps: 800,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("config file {0} not found")]
    Missing(String),
}

/// CLI values that override the file and the environment.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webrtc: Option<WebrtcOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverride>,
}

#[derive(Debug, Serialize)]
pub struct HttpOverride {
    pub listen: SocketAddr,
}
#[derive(Debug, Serialize)]
pub struct WebrtcOverride {
    pub listen: SocketAddr,
}
#[derive(Debug, Serialize)]
pub struct LogOverride {
    pub filter: String,
}

impl Config {
    /// The config from `path`, which must exist, then the environment and `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.display().to_string()));
        }
        Config::load_optional(Some(path), overrides)
    }

    /// Like [`Config::load`], with no file at all for `None`: the defaults, then the environment
    /// and `overrides` (a container configured by `SWITCHBOARD_*` variables alone).
    pub fn load_optional(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            figment = figment.merge(Toml::file(path));
        }
        let cfg: Config = figment
            // Only SECTION__KEY names are config, so unrelated SWITCHBOARD_* variables are left alone.
            .merge(Env::prefixed("SWITCHBOARD_").filter(|k| k.as_str().contains("__")).split("__"))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| Err(ConfigError::Invalid { key, message: message.into() });
        if self.rtp.port_min == 0 || self.rtp.port_min >= self.rtp.port_max {
            return bad("rtp.port_min", "must be above 0 and below rtp.port_max");
        }
        let first_even = self.rtp.port_min + self.rtp.port_min % 2;
        if first_even >= self.rtp.port_max {
            return bad("rtp.port_max", "the range must hold at least one even/odd port pair");
        }
        if let Err((key, message)) = self.cluster.check() {
            return Err(ConfigError::Invalid { key, message });
        }
        if let Err((key, message)) = self.egress.check() {
            return Err(ConfigError::Invalid { key, message });
        }
        if let Err(message) = self.check_workers() {
            return Err(ConfigError::Invalid { key: "media.workers", message });
        }
        if let Err(e) = self.rtp.allowed_networks() {
            return Err(ConfigError::Invalid { key: "rtp.allowed_peers", message: e });
        }
        if self.webrtc.advertised_ips.is_empty() {
            return bad("webrtc.advertised_ips", "needs at least one address");
        }
        if self.rooms.max_participants == 0 {
            return bad("rooms.max_participants", "must be at least 1");
        }
        if self.media.inactivity_timeout_secs == 0 {
            return bad("media.inactivity_timeout_secs", "must be at least 1");
        }
        if self.mixer.speakers == 0 {
            return bad("mixer.speakers", "must be at least 1");
        }
        if self.mixer.jitter_buffer_ms == 0 {
            return bad("mixer.jitter_buffer_ms", "must be at least 1");
        }
        if self.mixer.jitter_buffer_max_ms < self.mixer.jitter_buffer_ms || self.mixer.jitter_buffer_max_ms > 1000 {
            return bad("mixer.jitter_buffer_max_ms", "must be at least mixer.jitter_buffer_ms and at most 1000");
        }
        // Encoders take even sizes only (4:2:0 chroma), and a 4x4 grid must leave each tile pixels.
        let even = |v: u32| v.is_multiple_of(2) && (64..=3840).contains(&v);
        if !even(self.mixer.composite_width) || !even(self.mixer.composite_height) {
            return bad("mixer.composite_width", "composite_width and composite_height must be even, 64 to 3840");
        }
        if !(1..=60).contains(&self.mixer.composite_fps) {
            return bad("mixer.composite_fps", "must be 1 to 60");
        }
        if !(50..=20_000).contains(&self.mixer.composite_kbps) {
            return bad("mixer.composite_kbps", "must be 50 to 20000");
        }
        if self.http.max_body_bytes < 1024 {
            return bad("http.max_body_bytes", "must be at least 1024");
        }
        if self.rooms.max_participants > self.rooms.max_participants_cap {
            return bad("rooms.max_participants", "must not exceed rooms.max_participants_cap");
        }
        if self.rooms.max_event_listeners == 0 || self.http.max_connections == 0 {
            return bad(
                "rooms.max_event_listeners",
                "rooms.max_event_listeners and http.max_connections must be at least 1",
            );
        }
        if self.http.header_timeout_secs == 0
            || self.http.request_timeout_secs == 0
            || self.http.command_timeout_ms == 0
        {
            return bad("http.request_timeout_secs", "http timeouts must be above 0");
        }
        if let Err(message) = crate::api::CorsOrigins::parse(&self.http.cors_origins) {
            return Err(ConfigError::Invalid { key: "http.cors_origins", message });
        }
        if let Err(message) = self.ng.networks() {
            return Err(ConfigError::Invalid { key: "ng.allowed_sources", message });
        }
        if let Err(message) = self.node.check() {
            return Err(ConfigError::Invalid { key: "node", message });
        }
        if let Err(message) = self.auth.check(self.http.listen) {
            return Err(ConfigError::Invalid { key: "auth", message });
        }
        if let Err(message) = crate::webhooks::check(&self.webhooks, &self.auth) {
            return Err(ConfigError::Invalid { key: "webhooks", message });
        }
        // RUST_LOG is the environment's, not the config's: checked where it is used.
        if let Err(crate::logging::LogError::Filter { directive, error, .. }) = crate::logging::filter(&self.log, None)
        {
            return Err(ConfigError::Invalid { key: "log.filter", message: format!("{directive:?}: {error}") });
        }
        if self.metrics.listen.is_some_and(|m| m == self.http.listen) {
            return bad("metrics.listen", "must differ from http.listen (leave it unset to serve /metrics there)");
        }
        Ok(())
    }

    /// How many media workers run: `media.workers`, or one per core the process may use when
    /// it is 0 (or when the OS will not say how many, one).
    pub fn worker_count(&self) -> usize {
        match self.media.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Worker `i`'s WebRTC port: `webrtc.listen`'s port plus `i`, so the ports are a block the
    /// operator opens once. Port 0 stays 0: each worker binds a free port of its own.
    pub fn webrtc_port(&self, worker: usize) -> u16 {
        match self.webrtc.listen.port() {
            0 => 0,
            // `check_workers` keeps the block inside the port space.
            p => u16::try_from(usize::from(p) + worker).unwrap_or(u16::MAX),
        }
    }

    /// Each worker needs a WebRTC port above `webrtc.listen`'s that stays out of the leg range,
    /// and a leg port pair of its own.
    fn check_workers(&self) -> Result<(), String> {
        let n = self.worker_count();
        if n > MAX_WORKERS {
            return Err(format!("{n} workers; at most {MAX_WORKERS}"));
        }
        let pairs = crate::runtime::ports::pairs(self.rtp.port_min, self.rtp.port_max);
        if pairs < n {
            return Err(format!(
                "{n} workers, but rtp.port_min..rtp.port_max holds {pairs} port pairs: each worker needs one"
            ));
        }
        let first = usize::from(self.webrtc.listen.port());
        if first == 0 {
            return Ok(());
        }
        let last = first + n - 1;
        if last > usize::from(u16::MAX) {
            return Err(format!("worker WebRTC ports {first}..={last} (webrtc.listen's port + worker) pass 65535"));
        }
        let legs = usize::from(self.rtp.port_min)..=usize::from(self.rtp.port_max);
        if (first..=last).any(|p| legs.contains(&p)) {
            return Err(format!(
                "worker WebRTC ports {first}..={last} (webrtc.listen's port + worker) overlap rtp.port_min..rtp.port_max"
            ));
        }
        Ok(())
    }

    pub fn port_quarantine(&self) -> Duration {
        Duration::from_secs(self.rtp.port_quarantine_secs)
    }

    pub fn inactivity_timeout(&self) -> Duration {
        Duration::from_secs(self.media.inactivity_timeout_secs)
    }

    pub fn empty_room_timeout(&self) -> Duration {
        Duration::from_secs(self.rooms.empty_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        // Each test here is about another section: auth off keeps them to their subject.
        if !content.contains("[auth") {
            f.write_all(b"\n[auth]\nenabled = false\n").unwrap();
        }
        f
    }

    #[test]
    fn shipped_config_loads_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/switchboard.toml");
        let mut cfg = Config::load(&path, &Overrides::default()).unwrap();
        // The one difference: the shipped file turns auth on with the dev key.
        assert!(cfg.auth.enabled);
        assert_eq!(cfg.auth.keys.get("devkey").map(|s| s.0.expose()), Some(crate::auth::DEV_SECRET));
        cfg.auth.keys.clear();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let f = write("[http]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn bad_port_range_is_named() {
        let f = write("[rtp]\nport_min = 5000\nport_max = 4000\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("rtp.port_min"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn env_overrides_and_unrelated_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("sb.toml", "[http]\nlisten = \"127.0.0.1:1000\"\n[auth]\nenabled = false\n")?;
            jail.set_env("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:3000");
            jail.set_env("SWITCHBOARD_BIN", "/somewhere/else");
            let cfg = Config::load(Path::new("sb.toml"), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(cfg.http.listen.port(), 3000);
            Ok(())
        });
    }

    #[test]
    fn bad_allowed_peers_are_named() {
        let f = write("[rtp]\nallowed_peers = [\"127.0.0.0/8\", \"10.0.0.0/33\"]\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("rtp.allowed_peers") && err.contains("10.0.0.0/33"), "{err}");
        let f = write("[rtp]\nallowed_peers = [\"127.0.0.0/8\", \"::/0\"]\nport_quarantine_secs = 0\n");
        let cfg = Config::load(f.path(), &Overrides::default()).unwrap();
        assert_eq!(cfg.rtp.allowed_networks().unwrap().len(), 2);
        assert_eq!(cfg.port_quarantine(), Duration::ZERO);
    }

    #[test]
    fn a_range_without_a_port_pair_is_refused() {
        let f = write("[rtp]\nport_min = 40001\nport_max = 40002\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("rtp.port_max") && err.contains("pair"), "{err}");
    }

    #[test]
    fn jitter_buffer_bounds_are_checked() {
        for (toml, key) in [
            ("[mixer]\njitter_buffer_ms = 0\n", "mixer.jitter_buffer_ms"),
            ("[mixer]\njitter_buffer_ms = 60\njitter_buffer_max_ms = 40\n", "mixer.jitter_buffer_max_ms"),
            ("[mixer]\njitter_buffer_max_ms = 0\n", "mixer.jitter_buffer_max_ms"),
            ("[mixer]\njitter_buffer_max_ms = 1001\n", "mixer.jitter_buffer_max_ms"),
            ("[mixer]\ncomposite_width = 641\n", "mixer.composite_width"),
            ("[mixer]\ncomposite_height = 0\n", "mixer.composite_width"),
            ("[mixer]\ncomposite_fps = 0\n", "mixer.composite_fps"),
            ("[mixer]\ncomposite_kbps = 10\n", "mixer.composite_kbps"),
        ] {
            let f = write(toml);
            let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let f = write("[mixer]\njitter_buffer_ms = 40\njitter_buffer_max_ms = 40\n");
        let cfg = Config::load(f.path(), &Overrides::default()).unwrap();
        assert_eq!((cfg.mixer.jitter_buffer_ms, cfg.mixer.jitter_buffer_max_ms), (40, 40), "max = min: a fixed delay");
    }

    #[test]
    fn cors_origins_default_off_and_a_bad_one_is_named() {
        let f = write("[http]\ncors_origins = [\"https://ok.example\", \"https://bad.example/\"]\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("http.cors_origins") && err.contains("https://bad.example/"), "{err}");
        let f = write("[http]\ncors_origins = [\"*\"]\n");
        assert_eq!(Config::load(f.path(), &Overrides::default()).unwrap().http.cors_origins, ["*"]);
        assert!(Config::default().http.cors_origins.is_empty());
    }

    #[test]
    fn each_worker_needs_a_port_pair_and_a_webrtc_port_outside_the_leg_range() {
        let cfg = Config::default();
        assert_eq!(cfg.media.workers, 0);
        assert_eq!(cfg.worker_count(), std::thread::available_parallelism().map_or(1, |n| n.get()), "one per core");
        let f = write("[media]\nworkers = 3\n[rtp]\nport_min = 40000\nport_max = 40003\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("media.workers") && err.contains("holds 2 port pairs"), "{err}");
        let f = write("[media]\nworkers = 4\n[webrtc]\nlisten = \"127.0.0.1:39997\"\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("media.workers") && err.contains("39997..=40000") && err.contains("overlap"), "{err}");
        let f = write("[media]\nworkers = 2\n[webrtc]\nlisten = \"127.0.0.1:65535\"\n");
        let err = Config::load(f.path(), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("65535"), "{err}");
        let f = write("[media]\nworkers = 3\npin_workers = true\n");
        let cfg = Config::load(f.path(), &Overrides::default()).unwrap();
        assert_eq!((cfg.worker_count(), cfg.webrtc_port(0), cfg.webrtc_port(2)), (3, 3478, 3480));
        assert!(cfg.media.pin_workers);
        let f = write("[media]\nworkers = 2\n[webrtc]\nlisten = \"127.0.0.1:0\"\n");
        let cfg = Config::load(f.path(), &Overrides::default()).unwrap();
        assert_eq!(cfg.webrtc_port(1), 0, "port 0: every worker picks a free port");
    }

    #[test]
    fn cli_overrides_file() {
        let f = write("[http]\nlisten = \"127.0.0.1:1000\"\n");
        let o =
            Overrides { http: Some(HttpOverride { listen: "127.0.0.1:2000".parse().unwrap() }), ..Default::default() };
        assert_eq!(Config::load(f.path(), &o).unwrap().http.listen.port(), 2000);
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;
    use std::io::Write;

    fn load(content: &str) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        Config::load(f.path(), &Overrides::default())
    }

    #[test]
    fn auth_needs_a_key_and_the_dev_key_stays_on_loopback() {
        let err = load("").unwrap_err().to_string();
        assert!(err.contains("[auth.keys] is empty"), "{err}");
        let dev = format!("[http]\nlisten = \"0.0.0.0:8080\"\n[auth.keys]\ndevkey = \"{}\"\n", crate::auth::DEV_SECRET);
        let err = load(&dev).unwrap_err().to_string();
        assert!(err.contains("auth.keys.devkey"), "{err}");
        let own = "[http]\nlisten = \"0.0.0.0:8080\"\n[auth.keys]\nprod = \"a-long-enough-secret-of-ours\"\n";
        assert!(load(own).is_ok());
    }

    #[test]
    fn webhooks_load_with_defaults_and_name_a_missing_key() {
        let base = "[auth.keys]\nhooks = \"a-long-enough-secret-of-ours\"\n";
        let cfg = load(&format!("{base}[[webhooks]]\nurl = \"https://example.com/in\"\nkey = \"hooks\"\n")).unwrap();
        assert_eq!(cfg.webhooks.len(), 1);
        let h = &cfg.webhooks[0];
        assert_eq!((h.dtmf, h.max_retries, h.queue), (false, 5, 1024), "the documented defaults");
        let err = load(&format!("{base}[[webhooks]]\nurl = \"https://example.com/in\"\nkey = \"nope\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("webhooks[0].key") && err.contains("\"nope\""), "{err}");
        let err =
            load(&format!("{base}[[webhooks]]\nurl = \"https://example.com/in\"\nkey = \"hooks\"\nretries = 1\n"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("retries"), "an unknown key is named: {err}");
    }

    #[test]
    fn metrics_listen_must_differ_from_the_api() {
        let err = load("[auth]\nenabled = false\n[metrics]\nlisten = \"127.0.0.1:8080\"\n").unwrap_err().to_string();
        assert!(err.contains("metrics.listen"), "{err}");
    }
}
