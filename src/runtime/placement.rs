//! Which worker holds each room: the routing table the API consults before it sends a command,
//! and the policy that places a new room on the least loaded worker.
//!
//! The table is the one truth about where a room is, so a room id never lives on two workers.
//! A room is placed when a command that may create it (`CreateRoom`, or a join with
//! `rooms.auto_create`) finds no entry. Its entry then stays while the worker holds the room
//! (`held`) or while any command for it is on its way (`inflight`): a join that was placed and
//! failed leaves no entry behind, and a room that ends while a command for it waits in the queue
//! keeps its worker until that command has been carried out, so a command that re-creates the
//! room does it on the same worker the table names. Not the packet path: one short lock per API
//! command and per room start and end.

use super::command::CommandError;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use switchboard_driver::RoomId;

/// One worker's load as placement sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub running: bool,
    pub participants: usize,
    /// Rooms the table places on it, including those whose first command is on its way.
    pub rooms: usize,
    /// Its CPU share over the last housekeeping window, in thousandths of a core.
    pub cpu_permille: u32,
}

/// CPU shares this close count as equal, so the participant count decides between them: measured
/// CPU jitters, and idle workers all read near zero.
const CPU_STEP_PERMILLE: u32 = 150;

/// The least loaded running worker. Measured CPU first, in steps of 15 % of a core (a worker
/// running mixers costs far more per participant than one that forwards); among those within a
/// step of the least busy, the fewest participants, where each room counts as one more, so
/// rooms created together spread before anyone joins them; then the lower CPU, then the lower
/// index. `None` when no worker runs.
pub fn least_loaded(loads: &[Load]) -> Option<usize> {
    let least_cpu = loads.iter().filter(|l| l.running).map(|l| l.cpu_permille).min()?;
    loads
        .iter()
        .enumerate()
        .filter(|(_, l)| l.running && l.cpu_permille <= least_cpu.saturating_add(CPU_STEP_PERMILLE))
        .min_by_key(|(i, l)| (l.participants + l.rooms, l.cpu_permille, *i))
        .map(|(i, _)| i)
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    worker: usize,
    /// Commands for the room sent and not yet carried out.
    inflight: u32,
    /// Whether the worker holds the room.
    held: bool,
}

#[derive(Debug, Default)]
struct Table {
    rooms: HashMap<RoomId, Placed>,
    /// Entries per worker, for `Load::rooms`.
    per_worker: Vec<usize>,
}

impl Table {
    /// Drops the entry once nothing keeps it.
    fn tidy(&mut self, room: &RoomId) {
        if let Some(p) = self.rooms.get(room).copied().filter(|p| p.inflight == 0 && !p.held) {
            self.rooms.remove(room);
            self.per_worker[p.worker] -= 1;
        }
    }
}

/// What a command may do to a room that has no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// Refuse: `room_not_found`.
    NotFound,
    /// Place the room (it is being created), unless the node holds `max_rooms` already.
    Place { max_rooms: usize },
}

#[derive(Debug)]
pub struct Placement {
    table: Mutex<Table>,
}

impl Placement {
    pub fn new(workers: usize) -> Placement {
        Placement { table: Mutex::new(Table { rooms: HashMap::new(), per_worker: vec![0; workers] }) }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while the lock is held leaves the table as consistent as each step made it
        // (every step is one insert, update or removal), so it is taken over, not given up.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker to send a command on `room` to, counted in flight until `settle`. A room with
    /// no entry is refused or placed on the least loaded worker, as `absent` says; `loads` is
    /// asked only then, given each worker's room count.
    pub fn route(
        &self,
        room: &RoomId,
        absent: Absent,
        loads: impl FnOnce(&[usize]) -> Vec<Load>,
    ) -> Result<usize, CommandError> {
        let mut t = self.lock();
        if let Some(p) = t.rooms.get_mut(room) {
            p.inflight += 1;
            return Ok(p.worker);
        }
        let max_rooms = match absent {
            Absent::NotFound => return Err(CommandError::RoomNotFound(room.to_string())),
            Absent::Place { max_rooms } => max_rooms,
        };
        if t.rooms.len() >= max_rooms {
            return Err(CommandError::NodeFull(format!(
                "this node holds {max_rooms} rooms, the most it takes (node.max_rooms); use another node"
            )));
        }
        let worker = least_loaded(&loads(&t.per_worker)).ok_or(CommandError::ShuttingDown)?;
        t.rooms.insert(room.clone(), Placed { worker, inflight: 1, held: false });
        t.per_worker[worker] += 1;
        Ok(worker)
    }

    /// A command `route` counted was carried out, or could not be sent.
    pub fn settle(&self, room: &RoomId) {
        let mut t = self.lock();
        if let Some(p) = t.rooms.get_mut(room) {
            p.inflight = p.inflight.saturating_sub(1);
        }
        t.tidy(room);
    }

    /// Worker `worker` created `room`. Its entry exists (the creating command is in flight);
    /// should it not, the worker's word makes one.
    pub fn held(&self, room: &RoomId, worker: usize) {
        let mut t = self.lock();
        match t.rooms.get_mut(room) {
            Some(p) => p.held = true,
            None => {
                t.rooms.insert(room.clone(), Placed { worker, inflight: 0, held: true });
                t.per_worker[worker] += 1;
            }
        }
    }

    /// The worker holding `room` removed it.
    pub fn released(&self, room: &RoomId) {
        let mut t = self.lock();
        if let Some(p) = t.rooms.get_mut(room) {
            p.held = false;
        }
        t.tidy(room);
    }

    /// Worker `worker` failed: none of its rooms exist any more, and the commands on their way to
    /// it will never be carried out. The next join of one of those rooms places it afresh.
    pub fn forget_worker(&self, worker: usize) {
        let mut t = self.lock();
        t.rooms.retain(|_, p| p.worker != worker);
        t.per_worker[worker] = 0;
    }

    /// The worker `room` is placed on, if any.
    pub fn worker_of(&self, room: &RoomId) -> Option<usize> {
        self.lock().rooms.get(room).map(|p| p.worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(participants: usize, rooms: usize, cpu_permille: u32) -> Load {
        Load { running: true, participants, rooms, cpu_permille }
    }

    #[test]
    fn the_least_loaded_worker_is_chosen() {
        let dead = Load { running: false, ..Load::default() };
        let cases = [
            ("one worker", vec![load(50, 3, 900)], Some(0)),
            ("fewer participants", vec![load(10, 1, 0), load(4, 1, 0)], Some(1)),
            ("a tie goes to the lower index", vec![load(4, 1, 0), load(4, 1, 0)], Some(0)),
            ("a room counts as one participant", vec![load(0, 2, 0), load(1, 0, 0)], Some(1)),
            ("empty rooms spread", vec![load(0, 1, 0), load(0, 0, 0)], Some(1)),
            ("CPU within a step: participants decide", vec![load(10, 1, 100), load(20, 1, 0)], Some(0)),
            ("CPU beyond a step decides", vec![load(2, 1, 800), load(20, 1, 100)], Some(1)),
            ("then the lower CPU", vec![load(5, 1, 120), load(5, 1, 30)], Some(1)),
            ("a worker that stopped is never chosen", vec![dead, load(90, 9, 950)], Some(1)),
            ("and its CPU does not count", vec![Load { cpu_permille: 0, ..dead }, load(1, 1, 900)], Some(1)),
            ("no worker runs", vec![dead, dead], None),
            ("no worker at all", vec![], None),
        ];
        for (name, loads, want) in cases {
            assert_eq!(least_loaded(&loads), want, "{name}");
        }
    }

    fn id(s: &str) -> RoomId {
        RoomId::new(s).unwrap()
    }

    /// Loads from the table's room counts alone, every worker idle.
    fn idle(per_worker: &[usize]) -> Vec<Load> {
        per_worker.iter().map(|&rooms| load(0, rooms, 0)).collect()
    }

    const PLACE: Absent = Absent::Place { max_rooms: 10 };

    #[test]
    fn rooms_created_together_land_on_every_worker() {
        let p = Placement::new(2);
        let got: Vec<usize> = ["a", "b", "c", "d"].iter().map(|r| p.route(&id(r), PLACE, idle).unwrap()).collect();
        assert_eq!(got, [0, 1, 0, 1]);
        assert_eq!(p.route(&id("b"), Absent::NotFound, idle), Ok(1), "a placed room keeps its worker");
    }

    #[test]
    fn an_unplaced_room_is_not_found_or_refused_when_the_node_is_full() {
        let p = Placement::new(2);
        assert_eq!(p.route(&id("x"), Absent::NotFound, idle), Err(CommandError::RoomNotFound("x".into())));
        assert_eq!(p.worker_of(&id("x")), None, "a refused command places nothing");
        let full = Absent::Place { max_rooms: 1 };
        p.route(&id("a"), full, idle).unwrap();
        assert!(matches!(p.route(&id("b"), full, idle), Err(CommandError::NodeFull(_))));
        assert_eq!(p.route(&id("a"), full, idle), Ok(0), "a room that is there is no new room");
    }

    #[test]
    fn a_failed_creation_leaves_no_entry_and_a_held_room_stays() {
        let p = Placement::new(2);
        p.route(&id("a"), PLACE, idle).unwrap();
        p.settle(&id("a"));
        assert_eq!(p.worker_of(&id("a")), None, "the join that would have created it failed");
        let w = p.route(&id("b"), PLACE, idle).unwrap();
        p.held(&id("b"), w);
        p.settle(&id("b"));
        assert_eq!(p.worker_of(&id("b")), Some(w));
        p.released(&id("b"));
        assert_eq!(p.worker_of(&id("b")), None);
    }

    #[test]
    fn a_room_that_ends_with_a_command_on_its_way_keeps_its_worker_until_it_is_carried_out() {
        let p = Placement::new(2);
        p.route(&id("busy"), PLACE, idle).unwrap(); // on worker 0, so the next room goes to 1
        let w = p.route(&id("r"), PLACE, idle).unwrap();
        p.held(&id("r"), w);
        p.settle(&id("r"));
        assert_eq!(p.route(&id("r"), PLACE, idle), Ok(w), "a join on its way");
        p.released(&id("r")); // the room empties and is removed before the join is read
        assert_eq!(p.route(&id("r"), PLACE, idle), Ok(w), "still that worker's, not placed afresh");
        p.settle(&id("r"));
        p.settle(&id("r"));
        assert_eq!(p.worker_of(&id("r")), None);
    }

    #[test]
    fn a_failed_workers_rooms_are_placed_afresh() {
        let p = Placement::new(2);
        p.route(&id("a"), PLACE, idle).unwrap();
        let b = p.route(&id("b"), PLACE, idle).unwrap();
        assert_eq!(b, 1);
        p.forget_worker(1);
        assert_eq!(p.worker_of(&id("b")), None);
        let after_failure = |per: &[usize]| vec![load(0, per[0], 0), Load { running: false, ..Load::default() }];
        assert_eq!(p.route(&id("b"), PLACE, after_failure), Ok(0));
    }
}
