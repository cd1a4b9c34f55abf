//! Domain types above the store: who acts (`Principal`), with which `Role` and `Scope`, doing which `Action`. The
//! store speaks these types; it does not define them. The use cases (`usecase`) check every action against
//! `access::permits` before calling the store.

pub mod access;
pub mod insight_query;
pub mod outcome;
pub mod period;

pub use access::{permits, Action, Actor, AreaRef, Authenticated, Principal, RequestContext, Role, Scope};
pub use outcome::Outcome;
pub use period::{DayRange, PeriodKind};

/// `text` if it is a path of this server to send a browser back to after signing in, never another site: `//host`
/// and `/\host` are other sites to a browser, and a control character or a very long path is refused too.
#[must_use]
pub fn local_path(text: &str) -> Option<&str> {
    let local = text.starts_with('/')
        && !text.starts_with("//")
        && !text.contains('\\')
        && !text.chars().any(char::is_control)
        && text.len() <= 2048;
    local.then_some(text)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_path_of_this_server_is_returned_to() {
        assert_eq!(local_path("/people?x=1"), Some("/people?x=1"));
        assert_eq!(local_path("/"), Some("/"));
        for elsewhere in ["//evil.example", "/\\evil.example", "https://evil.example", "people", "", "/a\nb"] {
            assert_eq!(local_path(elsewhere), None, "{elsewhere:?}");
        }
    }
}
