//! The daemon's log: one line per event on stdout, as text or as JSON (`log.format`), filtered by
//! `log.filter`, or by `RUST_LOG` when the config sets no filter.
//!
//! "Sets no filter" means `log.filter` is absent from the file, the `SWITCHBOARD_LOG__FILTER`
//! variable and `--log`: a filter the operator wrote anywhere in the config wins over the
//! environment's generic `RUST_LOG`, and with neither the filter is `info`.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The filter when neither the config nor `RUST_LOG` names one.
pub const DEFAULT_FILTER: &str = "info";

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for a log shipper: `timestamp`, `level`, `target`, the event's
    /// fields (`message` among them) at the top level, and the spans it happened in.
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` env-filter directive, e.g. `info,switchboard=debug`. Unset: `RUST_LOG`, else
    /// `info`.
    pub filter: Option<String>,
    pub format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{source_name}: {directive:?} is not a tracing filter: {error}")]
    Filter { source_name: &'static str, directive: String, error: tracing_subscriber::filter::ParseError },
    #[error("the log could not be set up: {0}")]
    Init(String),
}

/// The filter directive in force, and where it came from (for the error message).
pub fn directive(cfg: &LogConfig, rust_log: Option<String>) -> (String, &'static str) {
    match (&cfg.filter, rust_log.filter(|v| !v.trim().is_empty())) {
        (Some(f), _) => (f.clone(), "log.filter"),
        (None, Some(env)) => (env, "RUST_LOG"),
        (None, None) => (DEFAULT_FILTER.to_string(), "the default filter"),
    }
}

/// The filter in force, parsed: what `--check-config` checks and `init` installs.
pub fn filter(cfg: &LogConfig, rust_log: Option<String>) -> Result<EnvFilter, LogError> {
    let (directive, source_name) = directive(cfg, rust_log);
    EnvFilter::try_new(&directive).map_err(|error| LogError::Filter { source_name, directive, error })
}

fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok()
}

/// Checks the config's log settings without installing anything.
pub fn check(cfg: &LogConfig) -> Result<(), LogError> {
    filter(cfg, rust_log()).map(|_| ())
}

/// Installs the process's log. Called once, before anything logs.
pub fn init(cfg: &LogConfig) -> Result<(), LogError> {
    let filter = filter(cfg, rust_log())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let done = match cfg.format {
        // Colour only on a terminal: log files and journald get plain text.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).try_init(),
    };
    done.map_err(|e| LogError::Init(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(filter: Option<&str>) -> LogConfig {
        LogConfig { filter: filter.map(String::from), format: LogFormat::Text }
    }

    #[test]
    fn the_config_wins_then_rust_log_then_info() {
        let env = || Some("debug,str0m=warn".to_string());
        assert_eq!(directive(&cfg(Some("warn")), env()), ("warn".into(), "log.filter"));
        assert_eq!(directive(&cfg(None), env()), ("debug,str0m=warn".into(), "RUST_LOG"));
        assert_eq!(directive(&cfg(None), None), ("info".into(), "the default filter"));
        assert_eq!(directive(&cfg(None), Some("  ".into())).1, "the default filter", "an empty RUST_LOG is unset");
    }

    #[test]
    fn a_bad_filter_names_where_it_came_from() {
        let e = filter(&cfg(None), Some("info,=[".into())).unwrap_err().to_string();
        assert!(e.starts_with("RUST_LOG: \"info,=[\""), "{e}");
        let e = filter(&cfg(Some("switchboard=loud")), None).unwrap_err().to_string();
        assert!(e.starts_with("log.filter:"), "{e}");
        assert!(filter(&cfg(Some("info,switchboard=debug")), None).is_ok());
    }

    #[test]
    fn format_reads_text_and_json_only() {
        let f: LogFormat = serde_json::from_str("\"json\"").unwrap();
        assert_eq!(f, LogFormat::Json);
        assert!(serde_json::from_str::<LogFormat>("\"yaml\"").is_err());
        assert_eq!(LogConfig::default().format, LogFormat::Text);
    }
}
