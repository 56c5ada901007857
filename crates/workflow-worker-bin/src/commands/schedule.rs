//! `schedule add|list|pause|resume|delete|trigger`.

use anyhow::Context;
use workflow_worker_core::{Client, NewSchedule, ScheduleId, WorkflowRef};

use crate::cli::ScheduleCommand;
use crate::render::schedule_line;

/// Runs one schedule command and prints the schedules it touched.
pub(super) async fn run(client: &Client, command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Add {
            workflow,
            cron,
            tz,
            input,
            catch_up,
        } => {
            let created = client
                .create_schedule(NewSchedule {
                    workflow: WorkflowRef::from(workflow.as_str()),
                    cron,
                    timezone: tz,
                    input,
                    catch_up,
                })
                .await?;
            println!("{}", schedule_line(&created));
        }
        ScheduleCommand::List => {
            for schedule in client.schedules().await? {
                println!("{}", schedule_line(&schedule));
            }
        }
        ScheduleCommand::Pause { id } => {
            println!(
                "{}",
                schedule_line(&client.pause_schedule(parse(&id)?).await?)
            );
        }
        ScheduleCommand::Resume { id } => {
            println!(
                "{}",
                schedule_line(&client.resume_schedule(parse(&id)?).await?)
            );
        }
        ScheduleCommand::Delete { id } => {
            let id = parse(&id)?;
            client.delete_schedule(id).await?;
            println!("deleted schedule {id}");
        }
        ScheduleCommand::Trigger { id } => {
            println!("{}", client.trigger_schedule(parse(&id)?).await?.id);
        }
    }
    Ok(())
}

fn parse(id: &str) -> anyhow::Result<ScheduleId> {
    id.parse()
        .with_context(|| format!("invalid schedule id \"{id}\""))
}
