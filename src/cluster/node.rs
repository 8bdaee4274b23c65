//! A node as the registry holds it, and how placement picks one for a new room.

use serde::{Deserialize, Serialize};

/// What each node writes under its key every heartbeat (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub api_url: String,
    /// Where its media arrives: the WebRTC address and the leg port range.
    pub media: Vec<String>,
    /// Participants it takes; `None`: no limit.
    pub capacity: Option<usize>,
    pub participants: usize,
    pub rooms: usize,
    /// Its CPU use over the last heartbeat, in cores.
    pub cpu: f64,
    /// Set on SIGTERM: it gets no new rooms.
    pub draining: bool,
    pub version: String,
    /// Unix milliseconds of the write.
    pub updated_ms: u64,
}

impl NodeRecord {
    fn room_left(&self) -> bool {
        self.capacity.is_none_or(|c| self.participants < c)
    }

    /// Load as a fraction of capacity; a node with no limit counts its participants against a
    /// nominal thousand, so it still compares with limited ones.
    fn load(&self) -> f64 {
        self.participants as f64 / self.capacity.unwrap_or(1000).max(1) as f64
    }

    pub fn has_room_left(&self) -> bool {
        !self.draining && self.room_left()
    }
}

/// The node for a new room: not draining, with capacity left, the least loaded by participants
/// against capacity. Among equals `prefer` (the node the request entered: no proxying), then the
/// least CPU, then the lowest id.
pub fn choose<'a>(nodes: &'a [NodeRecord], prefer: &str) -> Option<&'a NodeRecord> {
    nodes.iter().filter(|n| n.has_room_left()).min_by(|a, b| {
        a.load()
            .total_cmp(&b.load())
            .then((b.id == prefer).cmp(&(a.id == prefer)))
            .then(a.cpu.total_cmp(&b.cpu))
            .then_with(|| a.id.cmp(&b.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, participants: usize, capacity: Option<usize>, cpu: f64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            api_url: format!("http://{id}"),
            media: vec![],
            capacity,
            participants,
            rooms: 0,
            cpu,
            draining: false,
            version: String::new(),
            updated_ms: 0,
        }
    }

    #[test]
    fn the_least_loaded_node_with_room_left_is_chosen() {
        let nodes = [node("a", 10, Some(20), 0.1), node("b", 5, Some(20), 0.9), node("c", 19, Some(20), 0.0)];
        assert_eq!(choose(&nodes, "").map(|n| n.id.as_str()), Some("b"));
        // Load is relative to capacity: 10 of 100 is lighter than 5 of 20.
        let nodes = [node("a", 10, Some(100), 0.1), node("b", 5, Some(20), 0.1)];
        assert_eq!(choose(&nodes, "").map(|n| n.id.as_str()), Some("a"));
    }

    #[test]
    fn full_and_draining_nodes_are_passed_over() {
        let mut d = node("a", 0, Some(20), 0.0);
        d.draining = true;
        let nodes = [d, node("b", 20, Some(20), 0.0), node("c", 19, Some(20), 0.0)];
        assert_eq!(choose(&nodes, "").map(|n| n.id.as_str()), Some("c"));
        let nodes = [node("b", 20, Some(20), 0.0)];
        assert_eq!(choose(&nodes, ""), None);
    }

    #[test]
    fn ties_break_on_cpu_then_id_so_every_node_agrees() {
        let nodes = [node("b", 3, Some(20), 0.2), node("a", 3, Some(20), 0.2), node("c", 3, Some(20), 0.1)];
        assert_eq!(choose(&nodes, "").map(|n| n.id.as_str()), Some("c"));
        let nodes = [node("b", 3, Some(20), 0.2), node("a", 3, Some(20), 0.2)];
        assert_eq!(choose(&nodes, "").map(|n| n.id.as_str()), Some("a"));
    }

    #[test]
    fn among_equals_the_entering_node_keeps_the_room() {
        let nodes = [node("a", 3, Some(20), 0.1), node("b", 3, Some(20), 0.9)];
        assert_eq!(choose(&nodes, "b").map(|n| n.id.as_str()), Some("b"));
        // Only among equals: a lighter node still wins.
        let nodes = [node("a", 2, Some(20), 0.1), node("b", 3, Some(20), 0.0)];
        assert_eq!(choose(&nodes, "b").map(|n| n.id.as_str()), Some("a"));
    }
}
