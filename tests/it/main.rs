//! The one integration-test binary: the real server, real phones, a fresh database per test.

mod access;
mod bad_input;
mod spine;
