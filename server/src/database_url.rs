//! `DatabaseUrl`: a database URL that may hold a PostgreSQL password, and never shows it when printed.

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// What a redacted password reads as.
const REDACTED: &str = "[redacted]";

/// A database URL (`sqlite://PATH`, `postgres://USER:PASSWORD@HOST/DATABASE?…`). Its `Debug` and `Display` print it
/// with the password (in the user part, or a `password` query parameter) replaced by `[redacted]`, so a config struct
/// that derives `Debug`, an error message or a log line can name the database without revealing the password. The
/// URL itself is reached through `Deref` (`&url` is a `&str`), which is how it is handed to the store.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The whole URL, password included: only for connecting.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `[redacted]`.
    #[must_use]
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_tuple("DatabaseUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.redacted())
    }
}

impl FromStr for DatabaseUrl {
    type Err = Infallible;

    fn from_str(url: &str) -> Result<Self, Infallible> {
        Ok(DatabaseUrl(url.to_owned()))
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_owned())
    }
}

/// `scheme://user:password@host/…?password=…` → `scheme://user:[redacted]@host/…?password=[redacted]`. Text that is
/// not a URL is returned as it is: it has no password in a place a driver would read one from.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    // The user part ends at the last `@` before the query: a password may hold an unescaped `/` or `@`.
    let before_query = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let (authority, path_and_query) = match before_query.rfind('@') {
        Some(at) => {
            let host_end = rest[at..].find(['/', '?', '#']).map_or(rest.len(), |end| at + end);
            rest.split_at(host_end)
        }
        None => rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len())),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let path_and_query = match path_and_query.split_once('?') {
        Some((path, query)) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((key, _value)) if key.to_ascii_lowercase().contains("password") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => parameter.to_owned(),
                })
                .collect();
            format!("{path}?{}", parameters.join("&"))
        }
        None => path_and_query.to_owned(),
    };
    format!("{scheme}://{authority}{path_and_query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_debug_or_display_and_the_rest_of_the_url_does() {
        let url = DatabaseUrl::from("postgres://grapevine:hunter2@db.internal:5432/grapevine?sslmode=require");
        let shown = "postgres://grapevine:[redacted]@db.internal:5432/grapevine?sslmode=require";
        assert_eq!(url.to_string(), shown);
        assert_eq!(format!("{url:?}"), format!("DatabaseUrl(\"{shown}\")"));
        assert_eq!(url.expose(), "postgres://grapevine:hunter2@db.internal:5432/grapevine?sslmode=require");
        assert_eq!(&*url, url.expose());
    }

    #[test]
    fn passwords_in_the_query_and_odd_user_parts_are_redacted_too() {
        let cases = [
            (
                "postgres://u@h/db?password=hunter2&sslpassword=x",
                "postgres://u@h/db?password=[redacted]&sslpassword=[redacted]",
            ),
            ("postgresql://u:p%40ss:word@h", "postgresql://u:[redacted]@h"),
            ("postgres://u:pw@h#frag", "postgres://u:[redacted]@h#frag"),
            ("postgres://u:pa/ss@h/db", "postgres://u:[redacted]@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("sqlite://grapevine-data/grapevine.db", "sqlite://grapevine-data/grapevine.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (url, shown) in cases {
            assert_eq!(DatabaseUrl::from(url).to_string(), shown, "{url}");
        }
    }

    #[test]
    fn a_config_deriving_debug_over_it_shows_no_password() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            database_url: DatabaseUrl,
        }
        let config = Config { database_url: "postgres://u:hunter2@h/db".parse().unwrap() };
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{config:#?}").contains("hunter2"));
    }
}
