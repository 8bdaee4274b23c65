//! Picks the K loudest inputs, with hysteresis so the set does not flap on every syllable.
//!
//! Levels are in dBov (0 is full scale, -127 silence), smoothed by the caller. A newcomer takes
//! the place of the quietest selected input only when it is louder by `MARGIN_DB`, and not within
//! `HOLD` of the previous change. Free places are filled at once.

use std::time::{Duration, Instant};
use switchboard_driver::SlotKey;

const MARGIN_DB: f32 = 6.0;
const HOLD: Duration = Duration::from_millis(400);
/// Quieter than this is nobody speaking, and never displaces anyone.
const SILENCE_DB: f32 = -60.0;

pub struct SpeakerSelector {
    k: usize,
    /// Loudest first.
    selected: Vec<SlotKey>,
    last_change: Option<Instant>,
}

impl SpeakerSelector {
    pub fn new(k: usize) -> SpeakerSelector {
        SpeakerSelector { k: k.max(1), selected: Vec::new(), last_change: None }
    }

    pub fn set_k(&mut self, k: usize) {
        self.k = k.max(1);
        self.selected.truncate(self.k);
    }

    pub fn selected(&self) -> &[SlotKey] {
        &self.selected
    }

    pub fn contains(&self, slot: SlotKey) -> bool {
        self.selected.contains(&slot)
    }

    /// Updates the set from `levels` (every input's smoothed level). Returns true if the set
    /// changed; the order within it (loudest first) is refreshed then too, and only then, so a
    /// close race between two talkers does not flap the room's active speaker.
    pub fn update(&mut self, now: Instant, levels: &[(SlotKey, f32)]) -> bool {
        let before_len = self.selected.len();
        let mut changed = false;
        let level = |s: SlotKey| levels.iter().find(|(k, _)| *k == s).map(|(_, l)| *l);
        // Inputs that left the mixer leave the set.
        self.selected.retain(|s| level(*s).is_some());
        changed |= self.selected.len() != before_len;
        let held = matches!(self.last_change, Some(t) if now < t + HOLD);
        let mut candidates: Vec<(SlotKey, f32)> =
            levels.iter().copied().filter(|(k, _)| !self.selected.contains(k)).collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (slot, db) in candidates {
            if self.selected.len() < self.k {
                self.selected.push(slot);
                changed = true;
                continue;
            }
            if held || db < SILENCE_DB {
                break;
            }
            let Some((weakest_i, weakest_db)) = self
                .selected
                .iter()
                .enumerate()
                .map(|(i, s)| (i, level(*s).unwrap_or(-127.0)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
            else {
                break;
            };
            if db >= weakest_db + MARGIN_DB {
                self.selected[weakest_i] = slot;
                changed = true;
            } else {
                break;
            }
        }
        if changed {
            self.selected.sort_by(|a, b| level(*b).unwrap_or(-127.0).total_cmp(&level(*a).unwrap_or(-127.0)));
            self.last_change = Some(now);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u16) -> SlotKey {
        SlotKey(n)
    }

    #[test]
    fn fills_free_places_then_keeps_the_loudest() {
        let t0 = Instant::now();
        let mut sel = SpeakerSelector::new(2);
        sel.update(t0, &[(s(1), -30.0), (s(2), -20.0), (s(3), -40.0)]);
        assert_eq!(sel.selected(), &[s(2), s(1)]);
    }

    #[test]
    fn a_slightly_louder_newcomer_does_not_displace_anyone() {
        let t0 = Instant::now();
        let mut sel = SpeakerSelector::new(1);
        sel.update(t0, &[(s(1), -30.0), (s(2), -40.0)]);
        sel.update(t0 + Duration::from_secs(1), &[(s(1), -30.0), (s(2), -27.0)]);
        assert_eq!(sel.selected(), &[s(1)]);
        sel.update(t0 + Duration::from_secs(2), &[(s(1), -30.0), (s(2), -20.0)]);
        assert_eq!(sel.selected(), &[s(2)]);
    }

    #[test]
    fn no_change_within_the_hold_time() {
        let t0 = Instant::now();
        let mut sel = SpeakerSelector::new(1);
        sel.update(t0, &[(s(1), -30.0)]);
        sel.update(t0 + Duration::from_millis(10), &[(s(1), -30.0), (s(2), -10.0)]);
        assert_eq!(sel.selected(), &[s(1)]);
        sel.update(t0 + Duration::from_millis(500), &[(s(1), -30.0), (s(2), -10.0)]);
        assert_eq!(sel.selected(), &[s(2)]);
    }

    #[test]
    fn departed_inputs_leave_the_set() {
        let t0 = Instant::now();
        let mut sel = SpeakerSelector::new(2);
        sel.update(t0, &[(s(1), -30.0), (s(2), -20.0)]);
        assert!(sel.update(t0, &[(s(2), -20.0)]));
        assert_eq!(sel.selected(), &[s(2)]);
    }
}
