//! Worker scenarios: a real [`WorkflowWorker`](crate::WorkflowWorker) (or several) over the store,
//! one module per behaviour.

pub mod cancellation;
pub mod failures;
pub mod flow;
pub mod graphs;
pub mod maintenance;
pub mod maps;
pub mod pausing;
pub mod retries;
pub mod schedules;
pub mod shutdown;
pub mod signals;
pub mod subworkflows;
pub mod workers;
