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
mod bad_input;
mod campaign;
mod durability;
mod engine;
mod geotag;
mod hostile;
mod js_client;
mod limits;
mod nodes;
mod onboarding;
mod phone_crash;
mod python_sdk;
mod spine;
mod store;
mod tls;
