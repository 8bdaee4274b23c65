//! Hands out even/odd UDP port pairs (RTP, RTCP) from the configured range.

use std::collections::BTreeSet;

#[derive(Debug)]
pub struct PortPool {
    free: BTreeSet<u16>,
}

impl PortPool {
    /// Every even port `p` in `[min, max]` with `p + 1 <= max`.
    pub fn new(min: u16, max: u16) -> PortPool {
        let start = min + (min % 2);
        let free = (start..max).step_by(2).collect();
        PortPool { free }
    }

    /// The lowest free pair's even port. Ports that fail to bind are skipped by the caller
    /// and given back later with `release`.
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_first()
    }

    pub fn release(&mut self, even: u16) {
        self.free.insert(even);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_inside_the_range() {
        let mut p = PortPool::new(40001, 40006);
        assert_eq!(p.take(), Some(40002));
        assert_eq!(p.take(), Some(40004));
        assert_eq!(p.take(), None);
        p.release(40002);
        assert_eq!(p.available(), 1);
    }
}
