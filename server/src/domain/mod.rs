//! Domain types above the store: who acts (`Principal`), with which `Role` and `Scope`, doing which `Action`. The
//! store speaks these types; it does not define them. The use cases (`usecase`) check every action against
//! `access::permits` before calling the store.

pub mod access;
pub mod outcome;
pub mod period;

pub use access::{permits, Action, Actor, AreaRef, Authenticated, Principal, RequestContext, Role, Scope};
pub use outcome::Outcome;
pub use period::{DayRange, PeriodKind};

/// How much of a client's words (a name, a value, a path) a message repeats.
const SHOWN_CHARS: usize = 40;

/// A client's name, value or path as a message repeats it: control characters escaped, at most `SHOWN_CHARS`
/// characters.
#[must_use]
pub fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(SHOWN_CHARS).flat_map(char::escape_debug).collect();
    if text.chars().nth(SHOWN_CHARS).is_some() {
        shown.push('…');
    }
    shown
}
