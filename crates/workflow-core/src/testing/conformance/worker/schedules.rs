//! Schedules fired by workers: one execution per tick, pause and resume, catch-up.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::TestStore;
use crate::testing::conformance::{WAIT, quick_workflow, worker};
use crate::testing::fixture::workflow;
use crate::testing::nodes;
use crate::{Client, ListExecutionsParams, NewSchedule, Store, WorkflowRef};

async fn scheduled_ticks(store: &impl Store) -> Vec<chrono::DateTime<chrono::Utc>> {
    let mut ticks: Vec<_> = store
        .list_executions(ListExecutionsParams {
            workflow: Some(WorkflowRef::Name("tick".into())),
            limit: 10_000,
            before: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.scheduled_for)
        .collect();
    ticks.sort();
    ticks
}

async fn every_second(store: &(impl Store + Clone), catch_up: u32) -> crate::Schedule {
    let mut schedule = NewSchedule::new("tick", "* * * * * *");
    schedule.input = json!({"scheduled": true});
    schedule.catch_up = catch_up;
    Client::new(store.clone())
        .create_schedule(schedule)
        .await
        .expect("create schedule")
}

/// An every-second schedule polled by 4 workers for 10 s starts one execution per tick: no
/// tick twice, none skipped.
pub async fn every_tick_starts_one_execution_across_four_workers(store: impl Store + Clone) {
    quick_workflow(&store).await;
    // Catch-up room, so a worker delayed past a tick on a loaded machine skips none.
    let schedule = every_second(&store, 5).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let worker = worker(store.clone())
                .worker_id(format!("scheduler-{i}"))
                .poll_interval(Duration::from_millis(100));
            tokio::spawn(worker.run_until(stop.clone().cancelled_owned()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.cancel();
    for worker in workers {
        worker.await.unwrap().unwrap();
    }
    let stopped = store.now().await.unwrap();

    let ticks = scheduled_ticks(&store).await;
    let first = schedule.next_fire_at.expect("a first tick");
    let expected = (stopped - first).num_seconds() + 1;
    let fired = i64::try_from(ticks.len()).unwrap();
    assert!(
        (expected - 2..=expected).contains(&fired),
        "{fired} executions for {expected} ticks"
    );
    assert_eq!(ticks.first(), Some(&first), "the first tick was skipped");
    for pair in ticks.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "ticks must be consecutive and unique: {ticks:?}"
        );
    }
    let inputs = store
        .list_executions(ListExecutionsParams {
            limit: 1,
            before: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(inputs[0].input, json!({"scheduled": true}));
}

/// A paused schedule starts nothing; resuming it starts from the next tick, with no burst for
/// the paused period.
pub async fn pausing_stops_a_schedule_and_resuming_fires_no_burst(store: impl Store + Clone) {
    quick_workflow(&store).await;
    let schedule = every_second(&store, 10).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        worker(store.clone())
            .poll_interval(Duration::from_millis(100))
            .run_until(stop.clone().cancelled_owned()),
    );
    let started = tokio::time::Instant::now();
    while scheduled_ticks(&store).await.len() < 2 {
        assert!(started.elapsed() < WAIT, "the schedule never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = Client::new(store.clone());
    let paused = client.pause_schedule(schedule.id).await.unwrap();
    assert!(!paused.enabled);
    let paused_at = store.now().await.unwrap();
    // The paused period: real seconds must pass for ticks to be missed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resumed = client.resume_schedule(schedule.id).await.unwrap();
    let resumed_at = store.now().await.unwrap();
    assert!(resumed.enabled);
    assert!(
        resumed
            .next_fire_at
            .is_some_and(|next| next > resumed_at - chrono::Duration::seconds(1)),
        "resuming sets the next tick from now on: {resumed:?}"
    );
    // Workers learn of the resumed schedule at once through a wake-up, or at their next look
    // at the schedules without one (behind a transaction pooler): wait for either.
    let deadline = tokio::time::Instant::now() + WAIT + Duration::from_secs(60);
    let ticks = loop {
        let ticks = scheduled_ticks(&store).await;
        if ticks
            .iter()
            .any(|tick| *tick >= resumed_at - chrono::Duration::seconds(1))
        {
            break ticks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the resumed schedule never fired: {ticks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    running.await.unwrap().unwrap();
    // A tick due as the pause began may still have fired; none of the paused period may
    // (a burst on resuming would start them all).
    let in_pause: Vec<_> = ticks
        .iter()
        .filter(|tick| {
            **tick > paused_at + chrono::Duration::seconds(1)
                && **tick < resumed_at - chrono::Duration::seconds(1)
        })
        .collect();
    assert!(
        in_pause.is_empty(),
        "ticks of the paused period fired: {in_pause:?} (paused {paused_at}, resumed {resumed_at})"
    );
}

/// After every worker was down for several ticks, a schedule fires once for the missed
/// period by default, or up to its catch-up count: the latest ticks, not the stale ones.
///
/// The schedules tick at the five seconds before now and not again for 55 s, so no regular
/// tick follows the catch-up while the test looks, however slow the machine.
pub async fn missed_ticks_fire_once_by_default_or_up_to_catch_up(store: impl TestStore) {
    use chrono::{DurationRound, TimeDelta};

    let registry = nodes::registry();
    for name in ["once", "thrice"] {
        workflow(name)
            .node("work", "echo", Value::Null)
            .edge("start", "work")
            .save(&store, &registry)
            .await;
    }
    let second = store
        .now()
        .await
        .unwrap()
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap();
    // Newest first: the ticks one to five seconds ago.
    let missed: Vec<_> = (1..=5).map(|k| second - TimeDelta::seconds(k)).collect();
    let mut seconds: Vec<u32> = missed.iter().map(chrono::Timelike::second).collect();
    seconds.sort_unstable();
    let seconds: Vec<String> = seconds.iter().map(u32::to_string).collect();
    let cron = format!("{} * * * * *", seconds.join(","));
    let mut ids = Vec::new();
    for (name, catch_up) in [("once", 1), ("thrice", 3)] {
        let mut schedule = NewSchedule::new(name, cron.as_str());
        schedule.catch_up = catch_up;
        let schedule = Client::new(store.clone())
            .create_schedule(schedule)
            .await
            .unwrap();
        // Its first tick is the oldest of them a minute from now: as if no worker had run
        // for the past minute, the five are missed.
        store
            .backdate_next_fire_at(schedule.id, Duration::from_secs(60))
            .await;
        let backdated = store.get_schedule(schedule.id).await.unwrap();
        assert_eq!(backdated.next_fire_at, Some(missed[4]), "{cron}");
        ids.push(schedule.id);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        worker(store.clone())
            .poll_interval(Duration::from_millis(100))
            .run_until(stop.clone().cancelled_owned()),
    );
    let started = tokio::time::Instant::now();
    loop {
        let schedules = store.list_schedules().await.unwrap();
        if schedules.iter().all(|s| s.last_fire_at.is_some()) {
            break;
        }
        assert!(started.elapsed() < WAIT, "the schedules never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();

    for ((name, catch_up), id) in [("once", 1), ("thrice", 3)].into_iter().zip(ids) {
        let executions = store
            .list_executions(ListExecutionsParams {
                workflow: Some(WorkflowRef::Name(name.into())),
                limit: 1000,
                before: None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut fired: Vec<_> = executions.iter().filter_map(|e| e.scheduled_for).collect();
        fired.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(
            fired,
            missed[..catch_up],
            "{name}: the latest {catch_up} of the missed ticks, once each"
        );
        assert!(
            executions.iter().all(|e| e.schedule_id == Some(id)),
            "{name}: every execution records its schedule"
        );
    }
}
