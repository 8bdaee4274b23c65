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
    /// Inputs outside the set, loudest first; kept to reuse its buffer every tick.
    candidates: Vec<(SlotKey, f32)>,
}

impl SpeakerSelector {
    pub fn new(k: usize) -> SpeakerSelector {
        SpeakerSelector { k: k.max(1), selected: Vec::new(), last_change: None, candidates: Vec::new() }
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
        self.candidates.clear();
        self.candidates.extend(levels.iter().copied().filter(|(k, _)| !self.selected.contains(k)));
        // The loop below takes at most k + 1 candidates: each one either fills a free place,
        // takes the place of one of the inputs selected before it (a candidate placed earlier
        // in this loop is louder than the ones after it, so it is never the one displaced), or
        // ends the loop. Ordering only those keeps a tick linear in the room's size.
        // Equal levels go by slot, so the order does not depend on the sort's stability.
        let loudest_first = |a: &(SlotKey, f32), b: &(SlotKey, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let considered = (self.k + 1).min(self.candidates.len());
        if considered < self.candidates.len() {
            self.candidates.select_nth_unstable_by(considered, loudest_first);
        }
        self.candidates[..considered].sort_by(loudest_first);
        for i in 0..considered {
            let (slot, db) = self.candidates[i];
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

    /// The selection as it was before candidates were only partly ordered: every candidate
    /// sorted, every one offered to the loop.
    fn reference(sel: &mut (Vec<SlotKey>, Option<Instant>), k: usize, now: Instant, levels: &[(SlotKey, f32)]) {
        let level = |s: SlotKey| levels.iter().find(|(k, _)| *k == s).map(|(_, l)| *l);
        let before = sel.0.clone();
        sel.0.retain(|s| level(*s).is_some());
        let held = matches!(sel.1, Some(t) if now < t + HOLD);
        let mut candidates: Vec<(SlotKey, f32)> = levels.iter().copied().filter(|(k, _)| !sel.0.contains(k)).collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (slot, db) in candidates {
            if sel.0.len() < k {
                sel.0.push(slot);
                continue;
            }
            if held || db < SILENCE_DB {
                break;
            }
            let (i, weakest) = sel
                .0
                .iter()
                .enumerate()
                .map(|(i, s)| (i, level(*s).unwrap()))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            if db < weakest + MARGIN_DB {
                break;
            }
            sel.0[i] = slot;
        }
        if sel.0 != before {
            sel.0.sort_by(|a, b| level(*b).unwrap().total_cmp(&level(*a).unwrap()));
            sel.1 = Some(now);
        }
    }

    #[test]
    fn ordering_only_the_first_k_plus_one_candidates_picks_as_a_full_sort_does() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for k in 1..=4 {
            let t0 = Instant::now();
            let mut sel = SpeakerSelector::new(k);
            let mut expected = (Vec::new(), None);
            let mut levels: Vec<(SlotKey, f32)> = (0..12).map(|i| (s(i), -127.0)).collect();
            for step in 0..3000u64 {
                // Levels that jump, so that several inputs displace the set at once.
                for l in &mut levels {
                    if random(4) == 0 {
                        l.1 = -(random(90) as f32);
                    }
                }
                let present = levels.len() - random(3) as usize;
                let now = t0 + Duration::from_millis(20 * step);
                sel.update(now, &levels[..present]);
                reference(&mut expected, k, now, &levels[..present]);
                assert_eq!(sel.selected(), &expected.0[..], "k={k}, step {step}, levels {levels:?}");
            }
        }
    }
}
