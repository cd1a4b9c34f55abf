//! The one integration-test binary: the real server, real phones, a fresh database per test, and every test on both
//! backends (SQLite and the PostgreSQL on 127.0.0.1:5432).

/// Runs each named `async fn name(backend: Backend)` as two tests, `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(grapevine_tests::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(grapevine_tests::Backend::Postgres).await;
                }
            }
        )*
    };
}

mod access;
mod analyst_pages;
mod audit;
mod audit_actions;
mod authorization;
mod bad_input;
mod boundary_files;
mod browser;
mod browser_oidc;
mod campaign;
mod captured_at;
mod collect_cli;
mod command;
mod connections;
mod db_lock;
mod durability;
mod engine;
mod exports;
mod filing_set;
mod geotag;
mod hostile;
mod insights;
mod invitation_secret;
mod js_client;
mod limits;
mod nodes;
mod oidc;
mod onboarding;
mod one_door;
mod openapi;
mod people;
mod phone_crash;
mod postcodes;
mod python_sdk;
mod queries;
mod readme_tour;
mod secrets_in_logs;
mod sign_in;
mod signals;
mod spine;
mod store;
mod tls;
mod tokens;
mod web;
