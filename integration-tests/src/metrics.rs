//! The daemon's `/metrics` text as tests read it: one sample by name and labels.

/// The value of one sample in Prometheus text format: `name{labels...} value` whose labels
/// include all of `labels`. `None` when no such line exists.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let have: Vec<(&str, &str)> =
            rest.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.trim(), v.trim_matches('"'))).collect();
        labels.iter().all(|want| have.contains(want)).then(|| value.parse().ok()).flatten()
    })
}
