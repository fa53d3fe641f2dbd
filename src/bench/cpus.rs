//! Where the sipp method's processes run: sipp on a CPU of its own, the phones and the floor on
//! the others.
//!
//! sipp reads its clock for an INVITE after `sendto` returns. The INVITE wakes the callee at
//! once, and when the callee's CPU is busy the scheduler may run it on sipp's CPU, in front of
//! sipp: sipp then reads its clock only once the callee has answered, and the call reads a few
//! tens of microseconds, below the floor (seen on this 2-core machine right after a build, with
//! ctiphone, in 1 run of 5). With sipp alone on its CPU the callee waits for its own CPU instead,
//! which is part of its time. The affinity masks are Linux's (`sched_setaffinity`); a child
//! process, and a thread, starts with the mask of the thread that started it.

use std::io;

/// The CPUs this thread may run on, in order.
pub(super) fn allowed() -> io::Result<Vec<usize>> {
    // SAFETY: `set` is a plain bit mask that sched_getaffinity fills; its size is passed.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: reads a bit of the mask, within CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Restricts the calling thread (and what it starts from now on) to `cpus`.
pub(super) fn pin_this_thread(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no CPU to run on"));
    }
    // SAFETY: as in `allowed`; CPU_SET only writes bits below CPU_SETSIZE, checked first.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {c}")));
        }
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How the allowed CPUs are shared: sipp gets the last one, the callees the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Split {
    pub sipp: usize,
    pub callees: Vec<usize>,
}

/// The split of `allowed`, or None with fewer than two CPUs (nothing to split).
pub(super) fn split(allowed: &[usize]) -> Option<Split> {
    let (&sipp, callees) = allowed.split_last()?;
    (!callees.is_empty()).then(|| Split {
        sipp,
        callees: callees.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_gets_the_last_cpu_and_the_callees_the_rest() {
        assert_eq!(
            split(&[0, 1]),
            Some(Split {
                sipp: 1,
                callees: vec![0]
            })
        );
        assert_eq!(
            split(&[2, 5, 7]),
            Some(Split {
                sipp: 7,
                callees: vec![2, 5]
            })
        );
        assert_eq!(split(&[3]), None);
        assert_eq!(split(&[]), None);
    }

    #[test]
    fn a_thread_pinned_runs_only_where_it_was_told_and_can_be_let_go() {
        // In a thread of its own, so the test runner's threads keep their mask.
        std::thread::spawn(|| {
            let before = allowed().expect("the mask reads");
            assert!(!before.is_empty());
            let one = [before[0]];
            pin_this_thread(&one).expect("pins");
            assert_eq!(allowed().expect("the mask reads"), one);
            // A thread started now inherits the mask.
            let child = std::thread::spawn(|| allowed().expect("the mask reads"));
            assert_eq!(child.join().expect("joins"), one);
            pin_this_thread(&before).expect("lets go");
            assert_eq!(allowed().expect("the mask reads"), before);
            assert!(pin_this_thread(&[]).is_err());
            assert!(pin_this_thread(&[libc::CPU_SETSIZE as usize]).is_err());
        })
        .join()
        .expect("the test thread ends");
    }
}
