//! The store contract: what every [`Store`](crate::Store) does when called directly, one module per
//! entity of the driver interface.

pub mod bulk;
pub mod children;
pub mod claims;
pub mod executions;
pub mod flow;
pub mod items;
pub mod keys;
pub mod leases;
pub mod pauses;
pub mod schedules;
pub mod signals;
pub mod steps;
pub mod workflows;
