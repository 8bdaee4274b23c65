//! What the OS tells a worker thread and lets it do, through libc: its own CPU time, and being
//! pinned to one core.

#![allow(unsafe_code, reason = "clock_gettime and sched_{get,set}affinity through libc; each block says why")]

use std::time::Duration;

fn clock(id: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(id, &mut ts) };
    if r != 0 {
        return None;
    }
    Some(Duration::new(u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?))
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): one vDSO call, cheap
/// enough for every housekeeping turn.
pub fn cpu_time() -> Option<Duration> {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time the whole process has used, every thread's (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_time() -> Option<Duration> {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `Instant` and of the kernel's
/// `bpf_ktime_get_ns`, by which the forwarding program stamps its packets.
pub fn monotonic_ns() -> Option<u64> {
    clock(libc::CLOCK_MONOTONIC).and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// Pins the calling thread to the `i`-th core of those the process may run on (counting round
/// again when there are more workers than cores). Returns the core, or the OS's error.
pub fn pin_to(i: usize) -> std::io::Result<usize> {
    // SAFETY: cpu_set_t is plain bits; all zeros is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `allowed` is a valid cpu_set_t of `size` bytes; pid 0 is the calling thread.
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads bit `c` of a valid set, and `c` is below CPU_SETSIZE.
    let cores: Vec<usize> =
        (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) }).collect();
    let Some(&core) = cores.get(i % cores.len().max(1)) else {
        return Err(std::io::Error::other("the process may run on no core"));
    };
    // SAFETY: as above, all zeros is the empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` came from the allowed set, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(core, &mut one) };
    // SAFETY: `one` is a valid cpu_set_t of `size` bytes; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, size, &one) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(core)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_grows_with_work_and_not_with_sleep() {
        let t0 = cpu_time().expect("CLOCK_THREAD_CPUTIME_ID");
        std::thread::sleep(Duration::from_millis(50));
        let slept = cpu_time().unwrap() - t0;
        assert!(slept < Duration::from_millis(20), "a sleeping thread used {slept:?}");
        // Spins until 30 ms of CPU time are counted; on a shared machine that may take longer
        // than 30 ms of wall time, never 5 s.
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        let mut x = 0u64;
        while cpu_time().unwrap() - t0 < Duration::from_millis(30) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            assert!(std::time::Instant::now() < give_up, "5 s of spinning did not count 30 ms of CPU time");
        }
    }

    #[test]
    fn a_thread_is_pinned_to_an_allowed_core() {
        std::thread::spawn(|| {
            let core = pin_to(0).expect("sched_setaffinity");
            let again = pin_to(1_000_003).expect("counts round");
            assert!(core < libc::CPU_SETSIZE as usize && again < libc::CPU_SETSIZE as usize);
        })
        .join()
        .unwrap();
    }
}
