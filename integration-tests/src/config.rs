//! The daemon's config as a test writes it: the defaults for a port block, changed key by key.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::ports::PortBlock;

/// The daemon's TOML config as `section -> key -> value`, and arrays of tables (`[[name]]`,
/// such as `[[webhooks]]`) as `(name, keys)` in order. Values are JSON values rendered as TOML
/// (strings, numbers, booleans and arrays of those render the same in both).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub sections: BTreeMap<String, BTreeMap<String, Value>>,
    pub tables: Vec<(String, BTreeMap<String, Value>)>,
}

/// Media workers of a test daemon: 2 (so every test runs with rooms spread over two workers,
/// as on a two-core machine), or `SB_IT_WORKERS` (1 to 4), to run the suite with another count.
pub fn test_workers() -> u64 {
    let max = u64::from(crate::ports::WEBRTC_PORTS);
    match std::env::var("SB_IT_WORKERS") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => panic!("SB_IT_WORKERS={v:?}: a number of media workers from 1 to {max}"),
        },
        Err(_) => 2,
    }
}

impl Config {
    /// The default test config for a reserved port block.
    pub fn for_ports(p: &PortBlock) -> Config {
        let mut c = Config::default();
        c.set("http", "listen", format!("127.0.0.1:{}", p.http));
        c.set("webrtc", "listen", format!("127.0.0.1:{}", p.webrtc));
        c.set("webrtc", "advertised_ips", json!(["127.0.0.1"]));
        c.set("rtp", "bind_ip", "127.0.0.1");
        c.set("rtp", "advertised_ip", "127.0.0.1");
        c.set("rtp", "port_min", p.rtp_min);
        c.set("rtp", "port_max", p.rtp_max);
        c.set("rtp", "symmetric", true);
        c.set("media", "inactivity_timeout_secs", 30);
        c.set("media", "workers", test_workers());
        c.set("rooms", "auto_create", true);
        c.set("rooms", "max_participants", 100);
        c.set("rooms", "empty_timeout_secs", 60);
        c.set("mixer", "speakers", 3);
        c.set("mixer", "jitter_buffer_ms", 40);
        c.set("log", "filter", "info");
        // A test's daemon closes its participants at once when stopped; the drain tests set
        // their own.
        c.set("node", "drain_timeout_secs", 0);
        c.set("auth.keys", crate::tokens::TEST_KID, crate::tokens::TEST_SECRET);
        c
    }

    /// Set (or override) one key.
    pub fn set(&mut self, section: &str, key: &str, value: impl Into<Value>) -> &mut Self {
        self.sections.entry(section.to_string()).or_default().insert(key.to_string(), value.into());
        self
    }

    /// Remove one key (to test the daemon's default).
    pub fn remove(&mut self, section: &str, key: &str) -> &mut Self {
        if let Some(s) = self.sections.get_mut(section) {
            s.remove(key);
        }
        self
    }

    /// Appends one `[[name]]` table, e.g.
    /// `c.add_table("webhooks", json!({"url": "http://127.0.0.1:9/in", "key": "it"}))`.
    pub fn add_table(&mut self, name: &str, keys: Value) -> &mut Self {
        let Value::Object(keys) = keys else { panic!("[[{name}]]: the keys must be a JSON object") };
        self.tables.push((name.to_string(), keys.into_iter().collect()));
        self
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&Value> {
        self.sections.get(section).and_then(|s| s.get(key))
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let sections = self.sections.iter().map(|(name, keys)| (format!("[{name}]"), name, keys));
        let tables = self.tables.iter().map(|(name, keys)| (format!("[[{name}]]"), name, keys));
        for (header, name, keys) in sections.chain(tables) {
            out.push_str(&header);
            out.push('\n');
            for (k, v) in keys {
                assert!(!matches!(v, Value::Object(_) | Value::Null), "config {name}.{k}: tables/null not supported");
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::reserve_ports;

    #[test]
    fn config_renders_toml() {
        let p = reserve_ports();
        let mut c = Config::for_ports(&p);
        c.set("rooms", "auto_create", false).set("log", "filter", "debug,str0m=info");
        let t = c.to_toml();
        assert!(t.contains("[rooms]\nauto_create = false\n"), "{t}");
        assert!(t.contains(&format!("listen = \"127.0.0.1:{}\"", p.http)), "{t}");
        assert!(t.contains("advertised_ips = [\"127.0.0.1\"]"), "{t}");
        assert!(t.contains(&format!("port_min = {}", p.rtp_min)), "{t}");
    }

    #[test]
    fn arrays_of_tables_render_after_the_sections_in_order() {
        let mut c = Config::default();
        c.set("log", "filter", "info");
        c.add_table("webhooks", json!({"url": "http://a", "key": "it"}));
        c.add_table("webhooks", json!({"url": "http://b", "key": "it", "dtmf": true}));
        let t = c.to_toml();
        assert_eq!(
            t,
            "[log]\nfilter = \"info\"\n\n[[webhooks]]\nkey = \"it\"\nurl = \"http://a\"\n\n\
             [[webhooks]]\ndtmf = true\nkey = \"it\"\nurl = \"http://b\"\n\n"
        );
    }
}
