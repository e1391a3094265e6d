use super::*;
use proptest::prelude::*;

fn backoff(initial_ms: u64, max_ms: u64, factor: f64, jitter: f64) -> Backoff {
    Backoff {
        initial: Duration::from_millis(initial_ms),
        max: Duration::from_millis(max_ms),
        factor,
        jitter,
    }
}

fn policy(policy: RestartPolicy, max_retries: u32) -> Restart {
    Restart {
        policy,
        backoff: backoff(100, 30_000, 2.0, 0.0),
        reset_after: Duration::from_secs(60),
        max_retries,
    }
}

const SHORT: Duration = Duration::from_millis(10);

#[test]
fn delays_grow_by_the_factor_up_to_the_cap() {
    let b = backoff(100, 1_000, 2.0, 0.0);
    let delays: Vec<u128> = (0..6)
        .map(|n| backoff_delay(&b, n, 0.5).as_millis())
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
    assert_eq!(backoff_delay(&b, u32::MAX, 0.5), Duration::from_secs(1));
    assert_eq!(
        backoff_delay(&backoff(0, 1_000, 2.0, 0.1), 5, 0.9),
        Duration::ZERO
    );
}

#[test]
fn jitter_moves_the_delay_both_ways() {
    let b = backoff(1_000, 30_000, 2.0, 0.1);
    assert_eq!(backoff_delay(&b, 0, 0.0).as_millis(), 900);
    assert_eq!(backoff_delay(&b, 0, 0.5).as_millis(), 1_000);
    assert_eq!(backoff_delay(&b, 0, 0.999_999).as_millis(), 1_099);
}

#[test]
fn policies_decide_which_ends_restart() {
    let cases = [
        (RestartPolicy::Always, RunEnd::Success, true),
        (RestartPolicy::Always, RunEnd::Failure, true),
        (RestartPolicy::OnFailure, RunEnd::Success, false),
        (RestartPolicy::OnFailure, RunEnd::Failure, true),
        (RestartPolicy::Never, RunEnd::Success, false),
        (RestartPolicy::Never, RunEnd::Failure, false),
    ];
    for (p, end, restarts) in cases {
        let decision = RestartTracker::default().on_end(&policy(p, 0), end, SHORT, 0.5);
        assert_eq!(
            matches!(decision, Decision::Restart(_)),
            restarts,
            "{p:?} {end:?}"
        );
        if !restarts {
            assert_eq!(decision, Decision::Ended);
        }
    }
}

#[test]
fn max_retries_two_means_three_starts() {
    let p = policy(RestartPolicy::Always, 2);
    let mut tracker = RestartTracker::default();
    let decisions: Vec<Decision> = (0..3)
        .map(|_| tracker.on_end(&p, RunEnd::Failure, SHORT, 0.5))
        .collect();
    assert_eq!(
        decisions,
        [
            Decision::Restart(Duration::from_millis(100)),
            Decision::Restart(Duration::from_millis(200)),
            Decision::GaveUp,
        ]
    );
}

#[test]
fn a_long_run_resets_backoff_and_retries() {
    let p = policy(RestartPolicy::OnFailure, 2);
    let mut tracker = RestartTracker::default();
    tracker.on_end(&p, RunEnd::Failure, SHORT, 0.5);
    tracker.on_end(&p, RunEnd::Failure, SHORT, 0.5);
    assert_eq!(tracker.consecutive(), 2);
    let decision = tracker.on_end(&p, RunEnd::Failure, Duration::from_secs(60), 0.5);
    assert_eq!(decision, Decision::Restart(Duration::from_millis(100)));
    assert_eq!(tracker.consecutive(), 1);
}

#[test]
fn unlimited_retries_never_give_up() {
    let p = policy(RestartPolicy::Always, 0);
    let mut tracker = RestartTracker::default();
    for _ in 0..10_000 {
        assert!(matches!(
            tracker.on_end(&p, RunEnd::Failure, SHORT, 0.5),
            Decision::Restart(_)
        ));
    }
}

proptest! {
    #[test]
    fn delays_stay_within_jitter_of_the_capped_exponential(
        initial in 0u64..10_000, extra in 0u64..100_000, factor in 1.0f64..10.0,
        jitter in 0.0f64..=1.0, attempt in 0u32..100, random in 0.0f64..1.0,
    ) {
        let b = backoff(initial, initial + extra, factor, jitter);
        let delay = backoff_delay(&b, attempt, random).as_secs_f64();
        let base = (b.initial.as_secs_f64() * factor.powi(attempt as i32)).min(b.max.as_secs_f64());
        prop_assert!(delay <= b.max.as_secs_f64() + 1e-9);
        prop_assert!(delay >= base * (1.0 - jitter) - 1e-9);
        prop_assert!(delay <= base * (1.0 + jitter) + 1e-9);
    }

    #[test]
    fn without_jitter_delays_never_shrink(
        initial in 0u64..10_000, extra in 0u64..100_000, factor in 1.0f64..10.0, attempt in 0u32..60,
    ) {
        let b = backoff(initial, initial + extra, factor, 0.0);
        prop_assert!(backoff_delay(&b, attempt + 1, 0.5) >= backoff_delay(&b, attempt, 0.5));
    }
}

#[test]
fn a_cap_near_the_largest_duration_never_panics() {
    // `backoff.max: 18446744073709551615` (2^64 - 1 s) aborted drover before the conversion
    // from seconds was checked.
    let b = Backoff {
        initial: Duration::from_secs(u64::MAX),
        max: Duration::from_secs(u64::MAX),
        factor: 1e300,
        jitter: 1.0,
    };
    for attempt in [0, 1, 40, u32::MAX] {
        for random in [0.0, 0.5, 0.999, f64::NAN] {
            assert!(backoff_delay(&b, attempt, random) <= b.max);
        }
    }
}
