//! When a provider's next cycle is due after what its last one saw (issue 23): at its interval,
//! unless the token endpoint refused the credentials (then after 2x, 4x, 8x ... the interval,
//! a little less by jitter, capped at `max_backoff`) or a server asked to be left alone (a 429,
//! or a 503 with `Retry-After`: not before the moment it named, capped likewise). A monitor that
//! sends refused credentials every minute locks the account production uses; one that ignores
//! `Retry-After` keeps a shared quota exhausted.

use std::time::{Duration, SystemTime};

use crate::probe::{CycleReport, HoldOff, Later, Phase};

/// The most the jitter takes off a back-off delay: providers refused together (one identity
/// provider, one bad rotation) drift apart instead of retrying in lockstep.
const JITTER: f64 = 0.1;

/// A provider's back-off state, kept by its task between cycles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive back-off steps (refusals, and 429s without `Retry-After`) since the last
    /// issued token.
    pub steps: u32,
    /// Why the next cycle comes later than the interval; `None` while it does not.
    pub holding: Option<(Phase, HoldOff)>,
}

impl Backoff {
    /// Whether the provider waits because its credentials were refused: then its credential
    /// sources are watched, and a change ends the wait.
    pub fn refused(&self) -> bool {
        matches!(
            self.holding,
            Some((Phase::Token, reason)) if !matches!(reason, HoldOff::RateLimited | HoldOff::Http5xx)
        )
    }

    /// Forgets the back-off (the credentials changed, a token was issued, back-off turned off).
    pub fn end(&mut self) {
        *self = Backoff::default();
    }

    /// Takes a cycle's outcome into account and returns how long after `now` the next cycle is
    /// due. `jitter` is a random fraction in [0, 1).
    pub fn after(
        &mut self,
        report: &CycleReport,
        interval: Duration,
        max_backoff: Duration,
        now: SystemTime,
        jitter: f64,
    ) -> Duration {
        if max_backoff.is_zero() {
            self.end();
            return interval;
        }
        if report.token_issued() {
            self.end();
        }
        // Never more often than the interval, whatever `max_backoff` says.
        let cap = max_backoff.max(interval);
        let delay = match report.later() {
            None => {
                self.holding = None;
                return interval;
            }
            Some(Later::Refused(reason)) => {
                self.holding = Some((Phase::Token, reason));
                self.step(interval, cap, jitter)
            }
            Some(Later::Asked {
                phase,
                reason,
                at: None,
            }) => {
                self.holding = Some((phase, reason));
                self.step(interval, cap, jitter)
            }
            Some(Later::Asked {
                phase,
                reason,
                at: Some(at),
            }) => {
                let asked = at.duration_since(now).unwrap_or(Duration::ZERO);
                let delay = asked.clamp(interval, cap);
                self.holding = (delay > interval).then_some((phase, reason));
                delay
            }
        };
        if self.holding.is_none() {
            self.steps = 0;
        }
        delay
    }

    /// One more step: `interval` x 2^steps, capped, less up to [`JITTER`] of it.
    fn step(&mut self, interval: Duration, cap: Duration, jitter: f64) -> Duration {
        self.steps = self.steps.saturating_add(1);
        let factor = 1u32.checked_shl(self.steps).unwrap_or(u32::MAX);
        let full = interval.saturating_mul(factor).min(cap);
        let delay = full.mul_f64(1.0 - JITTER * jitter.clamp(0.0, 1.0));
        if delay <= interval {
            self.holding = None;
            return interval;
        }
        delay
    }
}

#[cfg(test)]
mod tests;
