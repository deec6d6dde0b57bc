//! Writing output files without clobbering or tearing anything: the one
//! writer behind state files, checkpoints and pictures.
//!
//! The rule, by what the path names:
//!
//! - **nothing yet**: the data goes to a temporary file with a unique name
//!   (created exclusively in the target's directory, so two writers, even
//!   in two containers sharing a volume, never share one), which is then
//!   renamed over the path: a reader sees the old file or the new one,
//!   never half of one. A failed write removes the temporary file.
//! - **a regular file**: replaced the same way, keeping its permissions.
//!   A read-only file (no write bit) is refused, and so is a file with
//!   several hard links (a rename would split them): the error says how to
//!   proceed.
//! - **a symbolic link**: followed; the file it leads to is replaced as
//!   above and the link stays a link.
//! - **a device, FIFO or socket** (`/dev/null`, a pipe): written through,
//!   in place: it is not a file to replace.
//! - **a directory**: refused.
//!
//! Errors name the path the user gave, never the temporary file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use engine_api::{Error, Result};

/// Where a write to `path` goes.
enum Target {
    /// Replace (or create) this regular file atomically, with these
    /// permissions (`None`: a new file's default).
    Replace(PathBuf, Option<fs::Permissions>),
    /// Write through to this device, FIFO or socket.
    Through(PathBuf),
}

fn refuse(path: &Path, why: String) -> Error {
    Error::io(path, std::io::Error::other(why))
}

/// Decides where a write to `path` goes, or why it may not.
fn target(path: &Path) -> Result<Target> {
    // A link is followed to the file it names (which may not exist yet).
    let mut resolved = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&resolved) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = fs::read_link(&resolved).map_err(|e| Error::io(path, e))?;
                resolved = match resolved.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                };
            }
            _ => break,
        }
    }
    match fs::metadata(&resolved) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = resolved
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(refuse(
                    path,
                    format!("the directory {} does not exist", dir.display()),
                ));
            }
            Ok(Target::Replace(resolved, None))
        }
        Err(e) => Err(Error::io(path, e)),
        Ok(m) if m.is_dir() => Err(refuse(path, "it is a directory".into())),
        Ok(m) if m.is_file() => {
            if m.permissions().mode() & 0o222 == 0 {
                return Err(refuse(
                    path,
                    "it is read-only: make it writable (chmod u+w) or choose another path to replace it".into(),
                ));
            }
            if m.nlink() > 1 {
                return Err(refuse(
                    path,
                    format!(
                        "it has {} hard links and replacing it would split them: choose another path",
                        m.nlink()
                    ),
                ));
            }
            Ok(Target::Replace(resolved, Some(m.permissions())))
        }
        Ok(m) => {
            let t = m.file_type();
            if t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket() {
                Ok(Target::Through(resolved))
            } else {
                Err(refuse(
                    path,
                    "it is not a file this program can write".into(),
                ))
            }
        }
    }
}

/// Checks, before a long run, that [`write()`] to `path` will be allowed:
/// its directory exists and takes a new file, and what is there may be
/// replaced (see the module docs). Nothing is left behind.
pub fn check_writable(path: &Path) -> Result<()> {
    match target(path)? {
        Target::Through(_) => Ok(()),
        Target::Replace(file, _) => {
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            tempfile::Builder::new()
                .prefix(".atheria-probe.")
                .tempfile_in(dir)
                .map(drop)
                .map_err(|e| Error::io(path, e))
        }
    }
}

/// Writes `bytes` to `path` by the rule of the module docs: atomically for
/// files, through for devices and FIFOs.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    match target(path)? {
        Target::Through(dev) => fs::OpenOptions::new()
            .write(true)
            .open(&dev)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| Error::io(path, e)),
        Target::Replace(file, perms) => {
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            // Unique and exclusively created; removed on any error (drop).
            let mut tmp = tempfile::Builder::new()
                .prefix(&format!(".{}.", name.unwrap_or_default()))
                .suffix(".tmp")
                .tempfile_in(dir)
                .map_err(|e| Error::io(path, e))?;
            // Through the File itself: NamedTempFile's own Write adds "at
            // path <temp name>" to its errors, and the user's path is the one
            // to name (the temporary file is removed on drop anyway).
            tmp.as_file_mut()
                .write_all(bytes)
                .and_then(|()| tmp.as_file().sync_data())
                .map_err(|e| Error::io(path, e))?;
            if let Some(p) = perms {
                fs::set_permissions(tmp.path(), p).map_err(|e| Error::io(path, e))?;
            }
            tmp.persist(&file).map_err(|e| Error::io(path, e.error))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("atheria-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_new_file_and_a_replaced_one_leave_nothing_else() {
        let d = dir("new");
        let p = d.join("a.bin");
        write(&p, b"one").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "temporary files left");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_is_followed_and_stays_a_link() {
        let d = dir("link");
        let (file, link) = (d.join("real.bin"), d.join("link.bin"));
        fs::write(&file, b"old").unwrap();
        std::os::unix::fs::symlink("real.bin", &link).unwrap();
        write(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&file).unwrap(), b"new");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_only_and_hard_linked_files_and_directories_are_refused_unchanged() {
        let d = dir("refuse");
        let ro = d.join("ro.bin");
        fs::write(&ro, b"keep").unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o444)).unwrap();
        let e = write(&ro, b"x").unwrap_err().to_string();
        assert!(e.contains("read-only") && e.contains("ro.bin"), "{e}");
        assert_eq!(fs::read(&ro).unwrap(), b"keep");

        let (a, b) = (d.join("a.bin"), d.join("b.bin"));
        fs::write(&a, b"shared").unwrap();
        fs::hard_link(&a, &b).unwrap();
        let e = write(&a, b"x").unwrap_err().to_string();
        assert!(e.contains("2 hard links"), "{e}");
        assert_eq!(fs::read(&b).unwrap(), b"shared");

        let e = write(&d, b"x").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_directory_is_named_not_a_temporary_file() {
        let d = dir("missing");
        let p = d.join("nonexist").join("final.safetensors");
        for e in [
            write(&p, b"x").unwrap_err(),
            check_writable(&p).unwrap_err(),
        ] {
            let e = e.to_string();
            assert!(
                e.contains("final.safetensors") && e.contains("does not exist"),
                "{e}"
            );
            assert!(!e.contains(".tmp"), "{e}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_character_device_is_written_through_not_replaced() {
        let d = dir("device");
        let node = d.join("mynull");
        // As `mknod -m666 mynull c 1 3` (root, as CI runs): a second /dev/null.
        let made = std::process::Command::new("mknod")
            .args(["-m666"])
            .arg(&node)
            .args(["c", "1", "3"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let node = if made {
            node
        } else {
            PathBuf::from("/dev/null")
        };
        write(&node, b"discarded").unwrap();
        check_writable(&node).unwrap();
        assert!(fs::metadata(&node).unwrap().file_type().is_char_device());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writers_on_threads_of_one_process_never_tear_a_file() {
        // Temporary names are unique per writer, not per process: threads
        // (or containers whose processes share a PID) never share one.
        let d = dir("race");
        let p = d.join("s.bin");
        let payload = |k: u8| vec![k; 1 << 16];
        std::thread::scope(|s| {
            for k in 1..=4u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..25 {
                        write(p, &payload(k)).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    if let Ok(b) = fs::read(&p) {
                        assert_eq!(b.len(), 1 << 16, "torn file");
                        assert!(b.iter().all(|&x| x == b[0]), "mixed file");
                    }
                }
            });
        });
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "temporary files left");
        fs::remove_dir_all(&d).unwrap();
    }
}
