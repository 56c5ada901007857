//! `workflow save|schema`.

use anyhow::Context;
use workflow_worker_core::{Client, WorkflowDefinition};

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

/// Prints the JSON Schema of workflow definitions.
pub(super) fn schema() -> anyhow::Result<()> {
    let schema = WorkflowDefinition::json_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
