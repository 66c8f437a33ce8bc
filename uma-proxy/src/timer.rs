//! Timers kept for reuse: the upstream timeout of the forwarding service and the header read
//! timeout of [`serve`](crate::serve)'s connections.
//!
//! Each request used to get a Tokio timer of its own, registered in Tokio's timer wheel when
//! first polled and removed from it when dropped: two passes under the wheel's lock per
//! timer. A [`Sleeps`] keeps the timers that are done with and hands them out again, reset
//! to the new deadline. As every deadline it hands out is "now + the same duration", the new
//! one is never earlier than the old, and Tokio moves a registered timer to a later deadline
//! with one atomic update (the wheel only meets the entry again when its old deadline comes,
//! and puts it back further on). A timer that fired while it was kept (no request for a whole
//! timeout) is registered again on reset, exactly as a new one would be.
//!
//! Every deadline is honoured as before: a reset timer fires at its new deadline, never at
//! its old one, and a fired timer reset to a later deadline is pending again.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How many idle timers a [`Sleeps`] keeps; one dropped beyond that is deregistered as usual.
const KEPT: usize = 1024;

/// Idle Tokio timers for deadlines that are all "now + one duration" (see the
/// [module docs](self)).
#[derive(Debug, Default)]
pub(crate) struct Sleeps {
    idle: Mutex<Vec<Timer>>,
}

/// A timer handed out by [`Sleeps`], with the runtime whose time driver it is registered
/// with: it is handed out again only in that runtime (a timer of a runtime that was dropped
/// would fail when polled, and one of a runtime nobody drives would never fire).
#[derive(Debug)]
pub(crate) struct Timer {
    runtime: tokio::runtime::Id,
    sleep: Pin<Box<Sleep>>,
}

impl Timer {
    /// Polls the timer: ready once its deadline has passed.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }

    /// Moves the timer to `deadline`.
    fn reset(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
    }
}

impl Sleeps {
    /// A timer that fires at `deadline`: an idle one of the current runtime reset, or a new
    /// one.
    ///
    /// Must be called inside a Tokio runtime (a new timer belongs to the current one).
    pub(crate) fn until(&self, deadline: Instant) -> Timer {
        let runtime = tokio::runtime::Handle::current().id();
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            // The last one kept, unless several runtimes share the service.
            idle.iter()
                .rposition(|t| t.runtime == runtime)
                .map(|at| idle.swap_remove(at))
        };
        match idle {
            Some(mut timer) => {
                timer.reset(deadline);
                timer
            }
            None => Timer {
                runtime,
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
            },
        }
    }

    /// Keeps `timer` for a later [`until`](Self::until) (at most [`KEPT`] of them; when full,
    /// one of another runtime makes room).
    pub(crate) fn keep(&self, timer: Timer) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = if idle.len() < KEPT {
            idle.push(timer);
            None
        } else {
            match idle.iter().position(|t| t.runtime != timer.runtime) {
                Some(at) => Some(std::mem::replace(&mut idle[at], timer)),
                None => Some(timer),
            }
        };
        drop(idle);
        // Deregistered here, outside the lock.
        drop(dropped);
    }

    /// How many idle timers are kept.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// hyper's timer for [`serve`](crate::serve): hyper makes a timer for every request head it
/// waits for (its header read timeout) and drops it once the head is read; these come from a
/// [`Sleeps`] and go back to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeptTimer {
    sleeps: Arc<Sleeps>,
}

impl hyper::rt::Timer for KeptTimer {
    fn now(&self) -> std::time::Instant {
        // Tokio's clock, as hyper-util's `TokioTimer` reads it.
        Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = Instant::now();
        self.sleep_until(
            now.checked_add(duration)
                .unwrap_or_else(|| far_future(now))
                .into(),
        )
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(KeptSleep {
            sleep: Some(self.sleeps.until(deadline.into())),
            sleeps: Arc::clone(&self.sleeps),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<KeptSleep>() {
            Some(kept) => match kept.get_mut().sleep.as_mut() {
                Some(inner) => inner.reset(deadline.into()),
                None => *sleep = self.sleep_until(deadline),
            },
            None => *sleep = self.sleep_until(deadline),
        }
    }
}

/// A deadline so far away that it never comes (what Tokio uses when `now + duration`
/// overflows): about 30 years.
pub(crate) fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

/// One of [`KeptTimer`]'s timers; back to its [`Sleeps`] when dropped.
struct KeptSleep {
    /// `None` only while being dropped.
    sleep: Option<Timer>,
    sleeps: Arc<Sleeps>,
}

impl Future for KeptSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut().sleep.as_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for KeptSleep {}

impl Drop for KeptSleep {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.sleeps.keep(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use hyper::rt::Timer as _;

    use super::*;

    const STEP: Duration = Duration::from_millis(300);

    /// Whether `sleep` has fired, without waiting.
    async fn fired<F: Future + ?Sized>(sleep: Pin<&mut F>) -> bool {
        let mut sleep = sleep;
        poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    /// Whether a [`Timer`] has fired, without waiting.
    async fn fired_timer(timer: &mut Timer) -> bool {
        poll_fn(|cx| Poll::Ready(timer.poll(cx).is_ready())).await
    }

    #[test]
    fn a_timer_is_handed_out_again_only_in_its_own_runtime() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a runtime")
        };
        let sleeps = Sleeps::default();
        let first = runtime();
        first.block_on(async {
            let mut t = sleeps.until(Instant::now() + Duration::from_millis(5));
            poll_fn(|cx| t.poll(cx)).await;
            sleeps.keep(t);
        });
        drop(first);
        assert_eq!(sleeps.idle(), 1);
        // Another runtime: the dropped runtime's timer would fail when polled.
        runtime().block_on(async {
            let mut t = sleeps.until(Instant::now() + Duration::from_millis(5));
            assert_eq!(sleeps.idle(), 1, "the other runtime's timer was handed out");
            poll_fn(|cx| t.poll(cx)).await;
            sleeps.keep(t);
        });
        assert_eq!(sleeps.idle(), 2);
    }

    #[tokio::test]
    async fn a_kept_timer_fires_at_its_new_deadline_only() {
        let sleeps = Sleeps::default();
        // One that fired while kept: reset to a later deadline, it is pending again.
        let mut first = sleeps.until(Instant::now() + Duration::from_millis(10));
        poll_fn(|cx| first.poll(cx)).await;
        sleeps.keep(first);
        assert_eq!(sleeps.idle(), 1);
        let start = Instant::now();
        let mut second = sleeps.until(start + STEP);
        assert_eq!(sleeps.idle(), 0, "the kept timer is handed out again");
        assert!(!fired_timer(&mut second).await, "fired at its old deadline");
        poll_fn(|cx| second.poll(cx)).await;
        assert!(start.elapsed() >= STEP, "{:?}", start.elapsed());

        // One still registered, moved to a later deadline: it does not fire at the old one.
        let start = Instant::now();
        let mut third = sleeps.until(start + STEP);
        // Polled once, so that Tokio's wheel holds it at `start + STEP`.
        assert!(!fired_timer(&mut third).await);
        sleeps.keep(third);
        let later = start + 3 * STEP;
        let mut fourth = sleeps.until(later);
        tokio::time::sleep_until(start + 2 * STEP).await;
        assert!(!fired_timer(&mut fourth).await, "fired at its old deadline");
        poll_fn(|cx| fourth.poll(cx)).await;
        assert!(Instant::now() >= later);
    }

    #[tokio::test]
    async fn at_most_kept_timers_are_kept() {
        let sleeps = Sleeps::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let all: Vec<_> = (0..KEPT + 5).map(|_| sleeps.until(deadline)).collect();
        for sleep in all {
            sleeps.keep(sleep);
        }
        assert_eq!(sleeps.idle(), KEPT);
    }

    #[tokio::test]
    async fn hypers_timers_go_back_when_dropped() {
        let timer = KeptTimer::default();
        let mut sleep = timer.sleep(Duration::from_millis(10));
        sleep.as_mut().await;
        drop(sleep);
        assert_eq!(timer.sleeps.idle(), 1);
        let start = Instant::now();
        let mut again = timer.sleep(STEP);
        assert_eq!(timer.sleeps.idle(), 0);
        assert!(
            !fired(again.as_mut()).await,
            "a fired timer handed out as fired"
        );
        // hyper's reset moves the same timer.
        timer.reset(&mut again, (start + 2 * STEP).into());
        tokio::time::sleep_until(start + STEP + STEP / 2).await;
        assert!(
            !fired(again.as_mut()).await,
            "fired at the deadline before the reset"
        );
        again.as_mut().await;
        assert!(start.elapsed() >= 2 * STEP);
    }
}
