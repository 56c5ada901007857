//! Schedules through the Client: validation, the atomic resume, and triggering one now.

use crate::testing::conformance::quick_workflow;
use crate::{Client, NewSchedule, Store};

/// Bad cron expressions, time zones, catch-up counts and workflows are refused with an error
/// naming them, and nothing is stored.
pub async fn invalid_schedules_are_rejected_and_nothing_is_written(store: impl Store + Clone) {
    quick_workflow(&store).await;
    let create = |workflow: &str, cron: &str, tz: &str, catch_up| {
        let store = store.clone();
        let (workflow, cron, tz) = (workflow.to_owned(), cron.to_owned(), tz.to_owned());
        async move {
            let mut schedule = NewSchedule::new(workflow, cron);
            schedule.timezone = tz;
            schedule.catch_up = catch_up;
            Client::new(store)
                .create_schedule(schedule)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let err = create("tick", "every day", "UTC", 1).await;
    assert!(
        err.starts_with("invalid cron expression \"every day\""),
        "{err}"
    );
    let err = create("tick", "0 9 * * *", "Europe/Nowhere", 1).await;
    assert!(
        err.starts_with("unknown time zone \"Europe/Nowhere\""),
        "{err}"
    );
    let err = create("tick", "0 9 * * *", "UTC", 0).await;
    assert_eq!(err, "catch_up must be at least 1");
    let err = create("missing", "0 9 * * *", "UTC", 1).await;
    assert_eq!(err, "workflow \"missing\" not found");
    assert!(store.list_schedules().await.unwrap().is_empty());
    let unknown = crate::ScheduleId(uuid::Uuid::new_v4());
    for err in [
        store.pause_schedule(unknown).await.unwrap_err(),
        store.resume_schedule(unknown, None).await.unwrap_err(),
        store.get_schedule(unknown).await.unwrap_err(),
    ] {
        assert_eq!(err.to_string(), format!("schedule {unknown} not found"));
    }
}

/// A resume sets the paused schedule's next tick in the same write that enables it, and
/// leaves an enabled schedule's tick as it is; pausing keeps the tick.
pub async fn resuming_sets_the_next_tick_in_one_write_and_leaves_an_enabled_schedule_alone(
    store: impl Store + Clone,
) {
    quick_workflow(&store).await;
    let client = Client::new(store.clone());
    let schedule = client
        .create_schedule(NewSchedule::new("tick", "0 9 * * *"))
        .await
        .unwrap();
    let tick = schedule.next_fire_at.expect("a first tick");
    let week_later = tick + chrono::Duration::days(7);

    let same = store
        .resume_schedule(schedule.id, Some(week_later))
        .await
        .unwrap();
    assert!(same.enabled);
    assert_eq!(
        same.next_fire_at,
        Some(tick),
        "an enabled schedule is left alone"
    );
    let paused = store.pause_schedule(schedule.id).await.unwrap();
    assert!(!paused.enabled);
    assert_eq!(paused.next_fire_at, Some(tick));
    let resumed = store
        .resume_schedule(schedule.id, Some(week_later))
        .await
        .unwrap();
    assert!(resumed.enabled);
    assert_eq!(resumed.next_fire_at, Some(week_later));
    assert_eq!(store.get_schedule(schedule.id).await.unwrap(), resumed);

    // The client resumes from the first tick after now.
    store.pause_schedule(schedule.id).await.unwrap();
    let before = store.now().await.unwrap();
    let resumed = client.resume_schedule(schedule.id).await.unwrap();
    let next = resumed.next_fire_at.expect("a next tick");
    assert!(resumed.enabled);
    assert!(
        next > before && next <= before + chrono::Duration::days(1),
        "{next} is not the first 09:00 after {before}"
    );
}

/// "Trigger now" starts one execution of the schedule's workflow with its input at once,
/// recorded as the schedule's, even while the schedule is paused, and leaves its ticks where
/// they were; an unknown schedule is not found and starts nothing.
pub async fn triggering_starts_an_execution_now_and_leaves_the_ticks_alone(
    store: impl Store + Clone,
) {
    quick_workflow(&store).await;
    let client = Client::new(store.clone());
    let mut new = NewSchedule::new("tick", "0 9 * * *");
    new.input = serde_json::json!({"report": "daily"});
    let schedule = client.create_schedule(new).await.unwrap();
    let paused = client.pause_schedule(schedule.id).await.unwrap();

    let started = client.trigger_schedule(schedule.id).await.unwrap();
    assert_eq!(started.workflow_name, "tick");
    assert_eq!(started.workflow_version, 1);
    assert_eq!(started.input, serde_json::json!({"report": "daily"}));
    assert_eq!(started.status, crate::ExecutionStatus::Pending);
    assert_eq!(
        started.schedule_id,
        Some(schedule.id),
        "recorded as the schedule's"
    );
    assert_eq!(started.scheduled_for, None, "not a tick");
    assert_eq!(
        store.get_schedule(schedule.id).await.unwrap(),
        paused,
        "the schedule is unchanged: still paused, same next tick"
    );

    // Each trigger is a start of its own, however close together.
    let again = client.trigger_schedule(schedule.id).await.unwrap();
    assert_ne!(again.id, started.id);
    assert_eq!(
        client
            .execution(again.id)
            .await
            .unwrap()
            .execution
            .schedule_id,
        Some(schedule.id)
    );
    assert_eq!(executions(&store).await, 2);

    let unknown = crate::ScheduleId(uuid::Uuid::new_v4());
    let err = client.trigger_schedule(unknown).await.unwrap_err();
    assert_eq!(err.to_string(), format!("schedule {unknown} not found"));
    assert_eq!(
        executions(&store).await,
        2,
        "an unknown schedule starts nothing"
    );
}

async fn executions(store: &impl Store) -> usize {
    let params = crate::ListExecutionsParams {
        limit: 10,
        before: None,
        ..Default::default()
    };
    store.list_executions(params).await.unwrap().len()
}
