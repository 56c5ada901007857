//! `workflow save|list|show|schema`.

use anyhow::Context;
use workflow_worker_core::{Client, WorkflowDefinition, WorkflowRef};

use crate::render;

/// Validates the definition in `file` and saves it as the workflow's next version.
pub(super) async fn save(client: &Client, file: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let definition = WorkflowDefinition::from_json(&text)
        .with_context(|| format!("{} is not a valid workflow definition", file.display()))?;
    let saved = client
        .save_workflow(definition)
        .await
        .with_context(|| format!("{} was not saved", file.display()))?;
    println!(
        "saved workflow \"{}\" version {} ({})",
        saved.name, saved.version, saved.workflow_id
    );
    Ok(())
}

/// Prints every saved workflow, one line each.
pub(super) async fn list(client: &Client) -> anyhow::Result<()> {
    let workflows = client.workflows().await?;
    if workflows.is_empty() {
        println!("no workflows saved yet (workflow-worker workflow save FILE)");
    }
    for workflow in &workflows {
        println!("{}", render::workflow_line(workflow));
    }
    Ok(())
}

/// Prints a workflow version's header line and its definition as JSON.
pub(super) async fn show(
    client: &Client,
    workflow: &str,
    version: Option<i32>,
) -> anyhow::Result<()> {
    let workflow = WorkflowRef::from(workflow);
    let (shown, latest) = match version {
        Some(version) => {
            let shown = client.workflow_at(workflow, version).await?;
            let latest = client.workflow(WorkflowRef::Id(shown.workflow_id)).await?;
            (shown, latest.version)
        }
        None => {
            let latest = client.workflow(workflow).await?;
            let version = latest.version;
            (latest, version)
        }
    };
    println!("{}", render::workflow_version_line(&shown, latest));
    println!("{}", serde_json::to_string_pretty(&shown.definition)?);
    Ok(())
}

/// Prints the JSON Schema of workflow definitions.
pub(super) fn schema() -> anyhow::Result<()> {
    let schema = WorkflowDefinition::json_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
