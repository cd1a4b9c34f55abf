//! Domain types above the store: who acts (`Principal`), with which `Role` and `Scope`, doing which `Action`. The
//! store speaks these types; it does not define them. The use cases (`usecase`) check every action against
//! `access::permits` before calling the store.

pub mod access;

pub use access::{permits, Action, Actor, AreaRef, Authenticated, Principal, RequestContext, Role, Scope};
