//! The commands: [`run`] picks one, opens the database the way it needs, and hands it a
//! [`Client`]. Each command lives in its own module; what they print is in `render`.

use std::sync::Arc;

use anyhow::Context;
use workflow_worker_core::{Client, ExecutionId, NodeRegistry, Store};
use workflow_worker_store::OpenOptions;

use crate::cli::{
    CancelArgs, Cli, Command, ConnectionArgs, ExecutionsCommand, RetryArgs, ScheduleCommand,
    WorkflowCommand,
};

mod executions;
mod maintenance;
mod schedule;
mod signals;
mod ui;
mod worker;
mod workflow;

/// Runs the command `cli` names (`run` when it names none).
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = Database::new(cli.database_url, cli.connection);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => worker::run(&db, cli.run).await,
        Command::Migrate => maintenance::migrate(&db).await,
        Command::Prune(args) => {
            maintenance::prune(&db.client("prune", Access::Write).await?, args).await
        }
        Command::Workflow(WorkflowCommand::Schema) => workflow::schema(),
        Command::Workflow(WorkflowCommand::Save { file }) => {
            workflow::save(&db.client("workflow", Access::Write).await?, &file).await
        }
        Command::Workflow(WorkflowCommand::List) => {
            workflow::list(&db.client("workflow", Access::Read).await?).await
        }
        Command::Workflow(WorkflowCommand::Show { workflow, version }) => {
            let client = db.client("workflow", Access::Read).await?;
            workflow::show(&client, &workflow, version).await
        }
        Command::Start(args) => {
            executions::start(&db.client("start", Access::Write).await?, args).await
        }
        Command::Signal(args) => {
            executions::signal(&db.client("signal", Access::Write).await?, args).await
        }
        Command::SignalWithStart(args) => {
            let client = db.client("signal-with-start", Access::Write).await?;
            executions::signal_with_start(&client, args).await
        }
        Command::Cancel(args) => {
            executions::cancel(&db.client("cancel", Access::Write).await?, args).await
        }
        Command::Retry(args) => {
            executions::retry(&db.client("retry", Access::Write).await?, args).await
        }
        Command::Pause(args) => {
            executions::pause(&db.client("pause", Access::Write).await?, args).await
        }
        Command::Resume(args) => {
            executions::resume(&db.client("resume", Access::Write).await?, args).await
        }
        Command::Executions(command) => match command {
            ExecutionsCommand::List(args) => {
                let client = db.client("executions", Access::Read).await?;
                executions::list(&client, args).await
            }
            ExecutionsCommand::Show { id, json } => {
                let client = db.client("executions", Access::Read).await?;
                executions::show(&client, &id, json).await
            }
            ExecutionsCommand::Cancel {
                id: Some(id),
                reason,
                ..
            } => {
                let client = db.client("executions", Access::Write).await?;
                executions::cancel(&client, CancelArgs { id, reason }).await
            }
            ExecutionsCommand::Cancel {
                id: None,
                filter,
                reason,
            } => {
                let client = db.client("executions", Access::Write).await?;
                executions::bulk(&client, &filter, executions::Bulk::Cancel(reason)).await
            }
            ExecutionsCommand::Retry {
                id: Some(id), how, ..
            } => {
                let client = db.client("executions", Access::Write).await?;
                executions::retry(&client, RetryArgs { id, how }).await
            }
            ExecutionsCommand::Retry {
                id: None,
                filter,
                how,
            } => {
                let client = db.client("executions", Access::Write).await?;
                executions::bulk(&client, &filter, executions::Bulk::Retry(how)).await
            }
            ExecutionsCommand::Pause(args) => {
                let client = db.client("executions", Access::Write).await?;
                executions::pause(&client, args).await
            }
            ExecutionsCommand::Resume(args) => {
                let client = db.client("executions", Access::Write).await?;
                executions::resume(&client, args).await
            }
            ExecutionsCommand::Delete { filter } => {
                let client = db.client("executions", Access::Write).await?;
                executions::bulk(&client, &filter, executions::Bulk::Delete).await
            }
        },
        Command::Ui(args) => ui::run(&db, args).await,
        Command::Schedule(command) => {
            let access = match command {
                ScheduleCommand::List => Access::Read,
                _ => Access::Write,
            };
            schedule::run(&db.client("schedule", access).await?, command).await
        }
    }
}

/// What a command may do to the database's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `run` and `migrate`: apply pending migrations.
    Migrate,
    /// Commands that write: a missing SQLite file is created (with its schema); an existing
    /// database must have the current schema.
    Write,
    /// Commands that only read: the database must exist with the current schema.
    Read,
}

/// The database the commands use, and how they connect to it.
struct Database {
    url: String,
    /// No URL was given: the URL is the embedded SQLite file's.
    embedded_default: bool,
    connection: ConnectionArgs,
}

impl Database {
    /// `--database-url`/`DATABASE_URL`, else `SUPABASE_DB_URL`, else the embedded SQLite file.
    fn new(flag_or_env: Option<String>, connection: ConnectionArgs) -> Self {
        let (url, embedded_default) = match flag_or_env
            .filter(|url| !url.is_empty())
            .or_else(workflow_worker_store::database_url_from_env)
        {
            Some(url) => (url, false),
            None => (workflow_worker_store::DEFAULT_DATABASE_URL.to_owned(), true),
        };
        Self {
            url,
            embedded_default,
            connection,
        }
    }

    /// The URL with its password hidden, for logs and messages.
    fn shown(&self) -> String {
        workflow_worker_store::redact_url(&self.url)
    }

    /// How to open the store for `access`, naming the connection `application_name`.
    fn options(&self, application_name: String, access: Access) -> OpenOptions {
        let connection = &self.connection;
        OpenOptions {
            migrate: access == Access::Migrate,
            create_missing: access == Access::Write,
            postgres: workflow_worker_store::PgStoreOptions::default()
                .max_connections(connection.max_connections)
                .connect_timeout(connection.connect_timeout)
                .statement_timeout(Some(connection.statement_timeout))
                .application_name(application_name)
                .pooler(connection.pooler),
        }
    }

    /// Opens the store for `access`, the connection named after `command`.
    async fn open(&self, command: &str, access: Access) -> anyhow::Result<Arc<dyn Store>> {
        let options = self.options(format!("workflow-worker {command}"), access);
        Ok(workflow_worker_store::open_store_with(&self.url, &options).await?)
    }

    /// A client over the store opened for `access`, validating against the built-in nodes.
    async fn client(&self, command: &str, access: Access) -> anyhow::Result<Client> {
        let store = self.open(command, access).await?;
        Ok(Client::from_shared(store, NodeRegistry::builtin()))
    }
}

/// An execution id typed on the command line.
fn parse_execution_id(id: &str) -> anyhow::Result<ExecutionId> {
    id.parse()
        .with_context(|| format!("invalid execution id \"{id}\""))
}
