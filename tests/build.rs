//! Rebuilds the tests when a migration they embed with `sqlx::migrate!` changes: the
//! application fixture's and the store's (as an old install applied them).

fn main() {
    println!("cargo:rerun-if-changed=fixtures/app_migrations");
    println!("cargo:rerun-if-changed=../crates/workflow-store/migrations");
}
