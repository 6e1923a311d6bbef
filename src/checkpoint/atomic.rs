//! Crash-safe directory replacement: a checkpoint is written into a temporary sibling and
//! swapped into place, so a complete checkpoint is under the real name at every instant.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// `dir` with `.suffix` appended to its file name.
pub(super) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Moves the finished `tmp` directory to `dir`. On Linux an existing `dir` is swapped with
/// `tmp` in one atomic `renameat2(RENAME_EXCHANGE)`, so some complete checkpoint is under the
/// name at every instant; elsewhere the old one is moved aside first.
pub(super) fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    if !dir.exists() {
        return fs::rename(tmp, dir).map_err(|e| Error::io("renaming into place", dir, e));
    }
    if exchange(tmp, dir).is_ok() {
        return fs::remove_dir_all(tmp)
            .map_err(|e| Error::io("removing the old checkpoint", tmp, e));
    }
    let old = sibling(dir, "old");
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| Error::io("removing", &old, e))?;
    }
    fs::rename(dir, &old).map_err(|e| Error::io("moving aside", dir, e))?;
    fs::rename(tmp, dir).map_err(|e| Error::io("renaming into place", dir, e))?;
    fs::remove_dir_all(&old).map_err(|e| Error::io("removing", &old, e))
}

/// Atomically swaps two paths (Linux `renameat2` with `RENAME_EXCHANGE`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

pub(super) fn sync_dir_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let path = entry.map_err(|e| Error::io("listing", dir, e))?.path();
        let file = fs::File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
        file.sync_all()
            .map_err(|e| Error::io("syncing", &path, e))?;
    }
    Ok(())
}
