//! # workflow-store
//!
//! Stores for [workflow-core](workflow_core): [`PgStore`] on PostgreSQL, for any number of
//! workers on any number of machines. Each store embeds its migrations and applies them with
//! `migrate()`. [`open_store`] picks the store from a connection URL.
//!
//! ```no_run
//! # async fn example() -> Result<(), workflow_core::Error> {
//! use workflow_core::WorkflowWorker;
//! use workflow_store::PgStore;
//!
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! store.migrate().await?;
//! WorkflowWorker::new(store).run().await
//! # }
//! ```

use std::sync::Arc;

use workflow_core::{Store, StoreError};

mod error;
pub mod postgres;
#[cfg(feature = "testing")]
pub mod testing;

pub use postgres::PgStore;

/// The URL schemes [`open_store`] accepts.
pub const SUPPORTED_SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// Why [`open_store`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL names no supported database.
    #[error(
        "unsupported database URL {url}: expected a URL starting with postgres:// or postgresql://"
    )]
    UnsupportedScheme {
        /// The URL, password redacted.
        url: String,
    },
    /// Connecting or migrating failed.
    #[error("cannot open database {url}")]
    Store {
        /// The URL, password redacted.
        url: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
}

/// Opens the store a URL names (`postgres://` or `postgresql://`) and applies its migrations.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    let redacted = redact_url(url);
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !scheme.is_some_and(|s| SUPPORTED_SCHEMES.contains(&s)) {
        return Err(OpenError::UnsupportedScheme { url: redacted });
    }
    let open = async {
        let store = PgStore::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    };
    match open.await {
        Ok(store) => Ok(Arc::new(store)),
        Err(source) => Err(OpenError::Store {
            url: redacted,
            source,
        }),
    }
}

/// `url` with any password replaced by `***`, for logs and error messages. Text that is not
/// a `scheme://` URL is returned as `<unparseable database URL>` since it may hold a password
/// anyway.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.cannot_be_a_base() => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password, which this one has.
                let _ = parsed.set_password(Some("***"));
            }
            let has_password_param = parsed.query_pairs().any(|(k, _)| k == "password");
            if has_password_param {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        _ => "<unparseable database URL>".to_owned(),
    }
}

/// Compiles the README's Rust examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/prod"),
            "postgres://app:***@db.example:5432/prod"
        );
        assert_eq!(
            redact_url("postgres://app@db/prod?sslmode=require&password=s3cret"),
            "postgres://app@db/prod?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(redact_url("app:s3cret@db"), "<unparseable database URL>");
    }

    #[tokio::test]
    async fn unsupported_scheme_is_rejected_naming_the_accepted_ones() {
        let err = open_store("mysql://root:pw@localhost/db")
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unsupported database URL mysql://root:***@localhost/db: expected a URL starting with postgres:// or postgresql://"
        );
    }
}
