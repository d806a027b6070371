//! A folder's dead letters: `dead-letter/NAME` with `NAME.reason` beside
//! it, named so that no dead letter or reason ever replaces another, and
//! moved back under their keys by `redrive`.

use super::{DEAD_LETTER, DirSource};
use crate::error::StorageError;
use crate::folder::{rename_no_replace, sync_dir, write_new};
use crate::source::{DeadLetter, DeadLettering, DeadLetters, Fetched, Redriven, Version};
use std::io::{ErrorKind, Read as _};

use std::path::Path;

/// Bytes a file name may have (Linux's `NAME_MAX`).
pub(super) const NAME_MAX: usize = 255;

/// What a reason's file name adds to its dead letter's.
pub(super) const REASON: &str = ".reason";

/// Room a dead letter's name keeps for its number (`%23` and ten digits).
const NUMBER_ROOM: usize = 13;

/// Marks a dead letter's name cut short (`%7E`): never made by escaping.
const CUT: &str = "%7E";

/// Marks a dead letter's number (`%23`): never made by escaping.
const NUMBER: &str = "%23";

/// The key, escaped for a dead letter's name: `%` written `%25` and, when
/// it ends in `.reason`, that dot written `%2E`. So no dead letter's name
/// ends in `.reason`, and none can be taken for the reason beside another
/// (`K.reason`, as SPEC.md lays them out), nor a reason for a dead letter.
/// Every `%` in an escaped key starts `%25` or `%2E`: `%23` and `%7E` can
/// only be ours.
pub(super) fn escaped(key: &str) -> String {
    let name = key.replace('%', "%25");
    match name.strip_suffix(REASON) {
        Some(stem) => format!("{stem}%2E{}", &REASON[1..]),
        None => name,
    }
}

/// The file name of the `n`th dead letter of request `key` (from 1): the
/// escaped key, then `%23n` from the second on, so that a request
/// dead-lettered again under the same key never replaces the first. A key
/// too long to have its reason beside it within `NAME_MAX` (a 250-byte
/// name, or one whose `%`s grew it) is cut at a character boundary and
/// marked `%7E`; its reason names the whole key. [`key_of`] reads a name
/// back.
pub(super) fn dead_letter_name(key: &str, n: u32) -> String {
    let room = NAME_MAX - REASON.len() - NUMBER_ROOM;
    let mut name = escaped(key);
    if name.len() > room {
        // The key is cut, not its escaped form, so no escape is split.
        let mut cut = key.floor_char_boundary(room - CUT.len());
        while key[..cut].replace('%', "%25").len() + CUT.len() > room {
            cut = key.floor_char_boundary(cut - 1);
        }
        name = format!("{}{CUT}", key[..cut].replace('%', "%25"));
    }
    if n > 1 {
        name.push_str(&format!("{NUMBER}{n}"));
    }
    name
}

/// Whether a dead letter's name was cut short.
fn is_cut(name: &str) -> bool {
    without_number(name).ends_with(CUT)
}

/// A dead letter's name without its number.
fn without_number(name: &str) -> &str {
    match name.rsplit_once(NUMBER) {
        Some((stem, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => stem,
        _ => name,
    }
}

/// The request key a dead letter's file name stands for: the key itself,
/// or for a name cut short the name as it is (the request goes back under
/// it).
pub(super) fn key_of(name: &str) -> String {
    let name = without_number(name);
    let name = match name.strip_suffix("%2Ereason") {
        Some(stem) => format!("{stem}.reason"),
        None => name.to_owned(),
    };
    name.replace("%25", "%")
}

impl DirSource {
    /// Moves what is at `from` (a request of key `key`) into the
    /// dead-letter folder, under the first name of the key's that no dead
    /// letter and no reason holds, the reason first: a crash in between
    /// leaves the request in place, to be dead-lettered again, never a
    /// request without its reason. Both steps are renames that never
    /// replace a file, so no dead letter or reason is ever overwritten, by
    /// this host or another. A rename keeps the bytes exactly as they were,
    /// and moves a link, not what it points at.
    pub(super) async fn move_to_dead_letters(
        &self,
        from: &Path,
        key: &str,
        reason: &str,
    ) -> Result<DeadLettering, StorageError> {
        let (root, from, key) = (self.root.clone(), from.to_owned(), key.to_owned());
        let mut reason = reason.to_owned();
        if is_cut(&dead_letter_name(&key, 1)) {
            reason.push_str(&format!(
                "; kept under a shortened name: the request's key was {}",
                key.as_bytes().escape_ascii()
            ));
        }
        tokio::task::spawn_blocking(move || move_to_dead_letters(&root, &from, &key, &reason))
            .await
            .map_err(|e| StorageError::io("move a request to the dead letters", std::io::Error::other(e)))?
    }
}

/// [`DirSource::move_to_dead_letters`], blocking.
pub(super) fn move_to_dead_letters(
    root: &Path,
    from: &Path,
    key: &str,
    reason: &str,
) -> Result<DeadLettering, StorageError> {
    let folder = root.join(DEAD_LETTER);
    match std::fs::create_dir(&folder) {
        Ok(()) => sync_dir(root).map_err(|e| StorageError::io(format!("sync {}", root.display()), e))?,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StorageError::io(format!("create {}", folder.display()), e)),
    }
    let reason = format!("{reason}\n");
    for n in 1..=u32::MAX {
        let name = dead_letter_name(key, n);
        let reason_path = folder.join(format!("{name}{REASON}"));
        // A look first spares a written and synced file per name taken;
        // the write that claims the name is what decides.
        if std::fs::symlink_metadata(folder.join(&name)).is_ok()
            || std::fs::symlink_metadata(&reason_path).is_ok()
        {
            continue;
        }
        let claimed = write_new(root, &reason_path, reason.as_bytes())
            .map_err(|e| StorageError::io(format!("write {}", reason_path.display()), e))?;
        if !claimed {
            continue;
        }
        let moved = rename_no_replace(from, &folder.join(&name));
        if moved.is_err() {
            // The name is not this request's after all: its reason goes.
            let _ = std::fs::remove_file(&reason_path);
        }
        match moved {
            Ok(()) => {
                sync_dir(&folder).map_err(|e| StorageError::io(format!("sync {}", folder.display()), e))?;
                return Ok(DeadLettering::Kept);
            }
            // A dead letter without its reason (a redrive stopped half-way)
            // holds the name: the next one.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(DeadLettering::Missed),
            Err(e) => {
                return Err(StorageError::io(
                    format!("move {} to {}", from.display(), folder.display()),
                    e,
                ));
            }
        }
    }
    Err(StorageError::request(
        format!("dead-letter {}", from.display()),
        "every name for its dead letter is taken",
    ))
}

#[async_trait::async_trait]
impl DeadLetters for DirSource {
    /// The dead letters, in key order: the regular files in
    /// `dead-letter/` other than reasons (what the listing set aside, links
    /// and the like, is left there). A file an earlier version dead-lettered
    /// under a name ending in `.reason` is passed over, never removed. A
    /// file's version is not kept: a rename moves the file itself.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError> {
        let folder = self.root.join(DEAD_LETTER);
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io(format!("list {}", folder.display()), e)),
        };
        let mut letters: Vec<(u32, DeadLetter)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.ends_with(REASON) && !name.starts_with('.'))
            .map(|name| {
                let number = name[without_number(&name).len()..]
                    .strip_prefix(NUMBER)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let letter = DeadLetter {
                    key: key_of(&name),
                    id: name,
                    version: Version::default(),
                };
                (number, letter)
            })
            .collect();
        letters.sort_by(|(a_n, a), (b_n, b)| (&a.key, a_n).cmp(&(&b.key, b_n)));
        Ok(letters.into_iter().map(|(_, letter)| letter).collect())
    }

    /// The `.reason` file beside the dead letter.
    async fn reason(&self, letter: &DeadLetter) -> Result<Option<String>, StorageError> {
        let path = self.root.join(DEAD_LETTER).join(format!("{}{REASON}", letter.id));
        match std::fs::read(&path) {
            Ok(reason) => Ok(Some(String::from_utf8_lossy(&reason).trim_end().to_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(format!("read {}", path.display()), e)),
        }
    }

    /// A dead letter's bytes, unless it is gone or larger than
    /// `max_bytes` (then it is not read).
    async fn read_dead_letter(&self, letter: &DeadLetter, max_bytes: u64) -> Result<Fetched, StorageError> {
        let path = self.root.join(DEAD_LETTER).join(&letter.id);
        let failed = |e| StorageError::io(format!("read {}", path.display()), e);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Fetched::Gone),
            Err(e) => return Err(failed(e)),
        };
        let size = file.metadata().map_err(failed)?.len();
        if size > max_bytes {
            return Ok(Fetched::TooLarge(size, Version::default()));
        }
        // It may have grown since: never more than the limit and a byte.
        let mut body = Vec::with_capacity(size as usize);
        file.take(max_bytes + 1).read_to_end(&mut body).map_err(failed)?;
        Ok(match body.len() as u64 {
            read if read > max_bytes => Fetched::TooLarge(read, Version::default()),
            _ => Fetched::Request(body, Version::default()),
        })
    }

    /// Moves the dead letter `key` back into the folder, its reason
    /// removed first. The move is one rename that never replaces a file: at
    /// any moment the request is in one place, and a request written under
    /// the key meanwhile is never overwritten (its reason is then put
    /// back). A stop between the two steps leaves the dead letter without
    /// its reason, for the next redrive to move; nothing here removes a
    /// file it cannot prove is a reason of its own.
    async fn redrive(&self, letter: &DeadLetter) -> Result<Redriven, StorageError> {
        let folder = self.root.join(DEAD_LETTER);
        let (name, key) = (&letter.id, &letter.key);
        let (from, to) = (folder.join(name), self.root.join(key));
        let action = || format!("move {} back to {}", from.display(), to.display());
        if std::fs::symlink_metadata(&to).is_ok() {
            return Ok(Redriven::Occupied);
        }
        let reason_path = folder.join(format!("{name}.reason"));
        let reason = match std::fs::read(&reason_path) {
            Ok(reason) => Some(reason),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(StorageError::io(format!("read {}", reason_path.display()), e)),
        };
        if reason.is_some() {
            std::fs::remove_file(&reason_path)
                .map_err(|e| StorageError::io(format!("remove {}", reason_path.display()), e))?;
        }
        match rename_no_replace(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Written under the key just now: the dead letter stays,
                // with its reason.
                if let Some(reason) = reason {
                    std::fs::write(&reason_path, reason)
                        .map_err(|e| StorageError::io(format!("write {}", reason_path.display()), e))?;
                }
                return Ok(Redriven::Occupied);
            }
            Err(e) => return Err(StorageError::io(action(), e)),
        }
        sync_dir(&self.root).map_err(|e| StorageError::io(action(), e))?;
        sync_dir(&folder).map_err(|e| StorageError::io(action(), e))?;
        Ok(Redriven::Moved)
    }
}
