//! Local files hactl keeps beside the stack (the state, the vault and its recipients): each is
//! replaced whole, so a reader or a crash finds the old content or the new, never a mix, an
//! empty file or nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a [`replace`] failed: the step (`create the directory`, `create a temp file in`,
/// `write`, `replace`), the path it was about and the I/O error.
#[derive(Debug)]
pub(crate) struct ReplaceError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Replaces `path` with `data`, mode `mode`: a temp file with a random name in the same
/// directory (owner-only from its creation, `O_EXCL`), written, given `mode`, fsynced, renamed
/// over `path`, then the directory fsynced (rename(2) is durable only then; failing that is not
/// an error). A missing directory is created with `dir_mode` (masked by the umask, as
/// mkdir(2)). Blocking: async callers run it on a blocking thread, in one piece, so no write
/// is still in flight when the rename publishes the file.
pub(crate) fn replace(
    path: &Path,
    data: &[u8],
    mode: u32,
    dir_mode: u32,
) -> Result<(), ReplaceError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ReplaceError { what, path, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(dir_mode)
        .create(dir)
        .map_err(err("create the directory", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".hactl-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err("create a temp file in", dir))?;
    tmp.write_all(data)
        .and_then(|_| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(err("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| err("replace", path)(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
