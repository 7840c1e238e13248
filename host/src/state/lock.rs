//! `PATH.lock`: the one writer of a SQLite state ([`super::sqlite`]), and the checks that
//! keep a link planted in the state's folder from making rulehost write another file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::sqlite::SqliteError;

/// Why a file of the state was not used: the state's folder may be writable by others, who
/// could otherwise make rulehost truncate or write another file through that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeFile {
    /// A symbolic link: it could lead anywhere.
    Symlink,
    /// Not a regular file (a FIFO, a device, ...).
    NotRegular,
    /// A regular file with this many hard links: another name may be a file that must not
    /// be written.
    HardLinks(u64),
    /// Owned by another user than the one running rulehost.
    Owner {
        /// The file's owner (uid).
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
}

impl std::fmt::Display for UnsafeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnsafeFile::Symlink => write!(f, "it is a symbolic link"),
            UnsafeFile::NotRegular => write!(f, "it is not a regular file"),
            UnsafeFile::HardLinks(n) => write!(f, "it has {n} hard links"),
            UnsafeFile::Owner { owner, user } => {
                write!(
                    f,
                    "it belongs to uid {owner}, not to this user (uid {user})"
                )
            }
        }
    }
}

/// What a writer does when another process holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once with [`SqliteError::Busy`].
    Fail,
    /// Block until the other process is done.
    Wait,
}

/// Takes `PATH.lock`, writing this process's pid into it for the next one's message.
///
/// The lock file is opened without following a symbolic link (`O_NOFOLLOW`) and written only
/// when the opened file is a regular file with one link, owned by this user: else the run
/// stops with [`SqliteError::Unsafe`] before it locks, truncates or writes anything, so a
/// planted link can never make it truncate another file (issue 11).
pub(super) fn lock_file(path: &Path, wait: LockWait) -> Result<File, SqliteError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let io_err = |source| SqliteError::Io {
        path: lock_path.clone(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NOFOLLOW.bits() as i32,
    );
    let mut file = options.open(&lock_path).map_err(|e| {
        if std::fs::symlink_metadata(&lock_path).is_ok_and(|m| m.file_type().is_symlink()) {
            SqliteError::Unsafe {
                path: lock_path.clone(),
                reason: UnsafeFile::Symlink,
            }
        } else {
            io_err(e)
        }
    })?;
    let meta = file.metadata().map_err(io_err)?;
    if let Some(reason) = unsafe_to_write(&meta) {
        return Err(SqliteError::Unsafe {
            path: lock_path,
            reason,
        });
    }
    match wait {
        LockWait::Wait => file.lock().map_err(io_err)?,
        LockWait::Fail => match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(SqliteError::Busy {
                    path: path.to_owned(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        },
    }
    // Checked above: this is the lock file itself and nothing else.
    file.set_len(0).map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(file)
}

/// Why an opened file must not be written, if it must not: only a regular file with one link
/// and, on Unix, owned by this process's user, is surely the file its name says.
fn unsafe_to_write(meta: &std::fs::Metadata) -> Option<UnsafeFile> {
    if !meta.file_type().is_file() {
        return Some(UnsafeFile::NotRegular);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.nlink() > 1 {
            return Some(UnsafeFile::HardLinks(meta.nlink()));
        }
        let user = rustix::process::geteuid().as_raw();
        if meta.uid() != user {
            return Some(UnsafeFile::Owner {
                owner: meta.uid(),
                user,
            });
        }
    }
    None
}
