//! Who holds a SQLite database: one `grapevine serve` per file, and no `restore` or `migrate` under a running server.
//!
//! The holder takes an exclusive advisory lock (`flock` on Unix, through `std::fs::File::try_lock`) on a lock file
//! beside the database (`grapevine.db.lock` beside `grapevine.db`) and keeps it for its whole life. The operating
//! system drops the lock when the process exits, however it exits, so a lock left by a crash (SIGKILL, a power cut)
//! is never in the way: the file may still be there, but nobody holds it. The file records the holder (pid, host,
//! start time, listen address) so that a refusal can say who is in the way.
//!
//! PostgreSQL takes no such lock: several nodes over one PostgreSQL are the way to run more than one server.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

/// Why a database could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseLockError {
    /// Another process holds the database.
    #[error(
        "{database} is in use by {holder}; {advice} (one server per SQLite file: to run several nodes, use \
         PostgreSQL)",
        database = .database.display()
    )]
    Held { database: PathBuf, holder: Box<Holder>, advice: &'static str },
    /// The lock file could not be opened or written.
    #[error("cannot use the lock file {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The URL is not a SQLite URL sqlx understands.
    #[error("cannot read the SQLite database URL: {0}")]
    Url(#[from] sqlx::Error),
}

/// What the lock file says about its holder. Every field is optional: a file written by a holder that died while
/// writing it, or by hand, still reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// The command holding the database: `serve`, `restore` or `migrate`.
    pub command: Option<String>,
    pub pid: Option<u32>,
    pub host: Option<String>,
    /// When the holder took the database (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// Where a server holding it listens.
    pub listen: Option<String>,
}

impl Holder {
    /// This process, about to run `command`.
    fn this_process(command: &str, listen: Option<SocketAddr>) -> Holder {
        let started_at = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok());
        Holder {
            command: Some(command.to_owned()),
            pid: Some(std::process::id()),
            host: host_name(),
            started_at,
            listen: listen.map(|address| address.to_string()),
        }
    }

    /// The lock file's text: one `key=value` a line, for people as much as for `parse`.
    fn to_text(&self) -> String {
        let mut text = String::new();
        let fields = [
            ("command", self.command.clone()),
            ("pid", self.pid.map(|pid| pid.to_string())),
            ("host", self.host.clone()),
            ("started_at", self.started_at.clone()),
            ("listen", self.listen.clone()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                text.push_str(key);
                text.push('=');
                text.push_str(&value);
                text.push('\n');
            }
        }
        text
    }

    /// Reads what `to_text` wrote; unknown lines and empty or unreadable values are left out.
    #[must_use]
    pub fn parse(text: &str) -> Holder {
        let mut holder = Holder::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.trim().to_owned();
            if value.is_empty() {
                continue;
            }
            match key.trim() {
                "command" => holder.command = Some(value),
                "pid" => holder.pid = value.parse().ok(),
                "host" => holder.host = Some(value),
                "started_at" => holder.started_at = Some(value),
                "listen" => holder.listen = Some(value),
                _ => {}
            }
        }
        holder
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.command {
            Some(command) => write!(formatter, "grapevine {command}")?,
            None => write!(formatter, "another grapevine process")?,
        }
        let mut details = Vec::new();
        if let Some(pid) = self.pid {
            details.push(match &self.host {
                Some(host) => format!("pid {pid} on {host}"),
                None => format!("pid {pid}"),
            });
        }
        if let Some(started_at) = &self.started_at {
            details.push(format!("since {started_at}"));
        }
        if let Some(listen) = &self.listen {
            details.push(format!("listening on {listen}"));
        }
        if details.is_empty() {
            Ok(())
        } else {
            write!(formatter, " ({})", details.join(", "))
        }
    }
}

/// The machine's name, for the lock file: where to look for the holder when the database is on a shared disk.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// A held database: the lock lasts as long as this value (and at most as long as the process).
#[derive(Debug)]
pub struct DatabaseLock {
    file: File,
    path: PathBuf,
    holder: Holder,
}

impl DatabaseLock {
    /// Takes the database `database_url` names for `command`, or says who holds it. PostgreSQL URLs and in-memory
    /// SQLite databases take no lock (`None`).
    ///
    /// # Errors
    /// Another process holds the database (`Held`, naming it), or the lock file cannot be written.
    pub fn acquire(
        database_url: &str,
        command: &'static str,
        listen: Option<SocketAddr>,
    ) -> Result<Option<DatabaseLock>, DatabaseLockError> {
        let Some(database) = sqlite_file(database_url)? else { return Ok(None) };
        let path = lock_path(&database);
        let io_error = |source| DatabaseLockError::Io { path: path.clone(), source };
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        // Never truncated before it is locked: the text belongs to whoever holds the lock. The file is never
        // deleted either, so two processes always lock the same file (deleting it could let one lock a file
        // already unlinked while another creates a new one).
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_error)?;
        // std's file locks (Rust 1.89, the workspace's minimum) take an advisory lock the OS drops with the process.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder's record, as far as it has written it; a record that cannot be read still refuses.
                let _ = file.read_to_string(&mut text);
                let advice = match command {
                    "restore" => "stop it before restoring; nothing was changed",
                    "migrate" => "a running server migrates at start; stop it before migrating by hand",
                    _ => "stop it first, or give this server its own database",
                };
                return Err(DatabaseLockError::Held { database, holder: Box::new(Holder::parse(&text)), advice });
            }
            Err(TryLockError::Error(source)) => return Err(io_error(source)),
        }
        let mut lock = DatabaseLock { file, path: path.clone(), holder: Holder::this_process(command, listen) };
        lock.write_holder().map_err(io_error)?;
        Ok(Some(lock))
    }

    /// Records where the server listens once it is bound (port 0 becomes a real port).
    ///
    /// # Errors
    /// The lock file cannot be written.
    pub fn set_listen(&mut self, listen: SocketAddr) -> Result<(), DatabaseLockError> {
        self.holder.listen = Some(listen.to_string());
        self.write_holder().map_err(|source| DatabaseLockError::Io { path: self.path.clone(), source })
    }

    /// The lock file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_holder(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(self.holder.to_text().as_bytes())?;
        self.file.sync_data()
    }
}

impl Drop for DatabaseLock {
    fn drop(&mut self) {
        // Emptied before it is released, so the file never names a holder that has gone; closing the file (which
        // follows) releases the lock.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The SQLite file a URL names; `None` for PostgreSQL and for an in-memory SQLite database.
fn sqlite_file(database_url: &str) -> Result<Option<PathBuf>, DatabaseLockError> {
    if !database_url.starts_with("sqlite:") || database_url.contains(":memory:") || database_url.contains("mode=memory")
    {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(database_url)?;
    let filename = options.get_filename();
    if filename.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(filename.to_path_buf()))
}

/// `grapevine.db` → `grapevine.db.lock`, in the same directory.
fn lock_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_and_the_lock_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("grapevine.db").display());
        let mut first = DatabaseLock::acquire(&url, "serve", None).unwrap().expect("a SQLite file is locked");
        first.set_listen("127.0.0.1:8080".parse().unwrap()).unwrap();
        let Err(DatabaseLockError::Held { holder, .. }) = DatabaseLock::acquire(&url, "restore", None) else {
            panic!("a second holder must be refused");
        };
        assert_eq!(holder.command.as_deref(), Some("serve"));
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.listen.as_deref(), Some("127.0.0.1:8080"));
        let message = DatabaseLock::acquire(&url, "serve", None).unwrap_err().to_string();
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains("listening on 127.0.0.1:8080"), "{message}");
        let path = first.path().to_path_buf();
        drop(first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "a released lock names no holder");
        assert!(DatabaseLock::acquire(&url, "restore", None).unwrap().is_some());
    }

    #[test]
    fn postgres_and_in_memory_databases_take_no_lock() {
        assert!(DatabaseLock::acquire("postgres://postgres@127.0.0.1:5432/grapevine", "serve", None)
            .unwrap()
            .is_none());
        assert!(DatabaseLock::acquire("sqlite::memory:", "serve", None).unwrap().is_none());
        assert!(DatabaseLock::acquire("sqlite://shared?mode=memory", "serve", None).unwrap().is_none());
    }

    #[test]
    fn a_holder_record_reads_back_and_a_partial_one_still_names_what_it_can() {
        let holder = Holder::this_process("serve", Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(Holder::parse(&holder.to_text()), holder);
        let partial = Holder::parse("pid=42\nnonsense\nhost=");
        assert_eq!(partial.pid, Some(42));
        assert_eq!(partial.to_string(), "another grapevine process (pid 42)");
        assert_eq!(Holder::default().to_string(), "another grapevine process");
    }
}
