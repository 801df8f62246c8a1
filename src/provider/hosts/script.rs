//! Remote command scripts, built as data by pure functions.
//!
//! Every interaction with a host is one POSIX `sh` script sent on the SSH session's stdin
//! (`sh -s`), never in argv or the environment: file contents travel as shell literals written
//! by the `printf` builtin (text that holds no secret) or base64-encoded inside
//! here-documents (secrets and anything else), which dash feeds through pipes, not temp
//! files. One script per phase keeps a host to one round trip for observing and one for
//! applying; processes are most of a host's cost, so the scripts use shell builtins where
//! POSIX sh allows (see `docs/benchmarks.md`, "Where a push spends its time"). Every
//! argument is quoted with `shell-escape`, never by hand. The output is line-oriented,
//! tab-separated records prefixed `HACTL` (`crate::onhost::record`) that its `parse` reads back.
//!
//! Host users are not trusted: writes never follow a link or a renamed directory a user
//! planted ([`apply_script_at`]), and observing never reads through a link nor fetches what
//! an unprivileged user could not read ([`observe_script`]); see
//! docs/security.md.

use std::fmt::Write as _;

use crate::onhost::cmd::{self, CheckKind};
use crate::onhost::paths::{pid_file, state_dir, temp_name, vrrp_state_file, READER_UID};
use crate::onhost::sh::{heredoc_b64, join, q};
use crate::plan::hosts::Manifest;

/// Where the original of a replaced file is kept: `"$S/backup"` + the quoted path, so the
/// variable expands and the path stays one word.
fn backup_path(path: &str) -> String {
    format!("\"$S/backup\"{}", q(path))
}

/// The directory part of an absolute path (`/` for a file at the root).
pub fn dir_of(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    }
}

/// The last component of a path.
fn base_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// One file to ask about while observing.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    /// Digest the stack wants; content is fetched (for a diff) only when it differs.
    pub want_sha256: Option<String>,
    /// Never fetch the content (it may hold a secret).
    pub sensitive: bool,
}

/// The observe script: digests, modes and types of files, service states and pids, and the
/// manifest.
///
/// `stat` reports what is at each path without following a symbolic link, and only regular
/// files that are no links are hashed: hactl never reads through a link a host user planted
/// (nor blocks on a fifo).
///
/// Process spawns are most of a host's cost (each fork and exec of a small tool costs about a
/// millisecond of CPU, the lab's `systemctl` several), so the script forks little: the
/// manifest is read by the shell itself, line by line into `manifest-line` records (it is
/// JSON that hactl wrote, in hactl's root-only state directory: text with no NUL);
/// one `sha256sum` and one `stat` for every file together; services whose pid file names a
/// live process are known without asking anyone (builtins only), and the rest are asked in one
/// `systemctl is-active` for all of them (it prints one state per unit, in order; `active`,
/// `reloading` and `refreshing` count as active, as `is-active`'s exit code counts them).
/// A no-op on a host whose services run is three processes: `sh`, `sha256sum`, `stat`. The
/// content of a file that differs from what the stack wants, for the plan's diff, comes in the
/// same round trip (a second one cost a session and three processes more per host).
pub fn observe_script(stack: &str, probes: &[Probe], services: &[String]) -> String {
    let mut s = String::from("set -u\n");
    let _ = writeln!(s, "S={}", q(&state_dir(stack)));
    s.push_str(
        "if [ -f \"$S/manifest.json\" ]; then while IFS= read -r l || [ -n \"$l\" ]; do printf 'HACTL\\tmanifest-line\\t%s\\n' \"$l\"; l=; done < \"$S/manifest.json\"; fi\n",
    );
    if !probes.is_empty() {
        let paths = probes
            .iter()
            .map(|p| q(&p.path).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        // The digests and stats are kept in variables (each still one process) so that the
        // script itself can tell which files differ from what the stack wants.
        let _ = writeln!(
            s,
            "set --; for p in {paths}; do [ -f \"$p\" ] && [ ! -L \"$p\" ] && set -- \"$@\" \"$p\"; done\nsums=; [ $# -eq 0 ] || sums=$(sha256sum -- \"$@\" 2>/dev/null)\nprintf 'HACTL-SUMS\\n%s\\nHACTL-END\\n' \"$sums\""
        );
        let _ = writeln!(
            s,
            "stats=$(stat --printf 'HACTL\\tstat\\t%a\\t%F\\t%n\\n' -- {paths} 2>/dev/null)\nprintf '%s\\n' \"$stats\""
        );
        // The content of a file that differs is fetched in the same round trip, for the
        // plan's diff: only a regular file whose "other" read bit is set (the mode's last
        // digit 4 to 7, just before its type in the stat record) that the stack does not mark
        // sensitive, read as an unprivileged user (see [`fetch_one`]). `observe` keeps it
        // only when the plan may show it.
        let wanted: Vec<(&Probe, &String)> = probes
            .iter()
            .filter(|p| !p.sensitive)
            .filter_map(|p| p.want_sha256.as_ref().map(|w| (p, w)))
            .collect();
        if !wanted.is_empty() {
            s.push_str("nl='\n'\n");
        }
        for (p, want) in wanted {
            let path = q(&p.path);
            let _ = writeln!(
                s,
                "case \"$nl$sums$nl\" in *\"$nl\"{want}'  '{path}\"$nl\"*) ;; *) case \"$stats$nl\" in *[4567]'\tregular file\t'{path}\"$nl\"*|*[4567]'\tregular empty file\t'{path}\"$nl\"*) {} ;; esac ;; esac",
                fetch_one(&p.path)
            );
        }
    }
    let record =
        |name: &str, state: &str| format!("printf 'HACTL\\tservice\\t%s\\t{state}\\t\\n' {name}");
    // Services not found by their pid file, for one `systemctl is-active` together.
    s.push_str("set --\n");
    let mut asks_systemctl = false;
    for svc in services {
        let name = q(svc);
        if svc == "app" {
            // no system unit: its own `is-active` (app-ctl)
            let _ = writeln!(
                s,
                "if {} >/dev/null 2>&1; then {}; else {}; fi",
                join(&cmd::is_active(stack, svc)),
                record(&name, "active"),
                record(&name, "inactive")
            );
            continue;
        }
        asks_systemctl = true;
        match pid_file(svc) {
            Some(f) => {
                let _ = writeln!(
                    s,
                    "if read p < {f} 2>/dev/null && [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null; then printf 'HACTL\\tservice\\t%s\\tactive\\t%s\\n' {name} \"$p\"; else set -- \"$@\" {name}; fi",
                    f = q(f)
                );
            }
            None => {
                let _ = writeln!(s, "set -- \"$@\" {name}");
            }
        }
    }
    if asks_systemctl {
        s.push_str(concat!(
            "if [ $# -gt 0 ]; then\n",
            "  states=$(systemctl is-active \"$@\" 2>/dev/null)\n",
            "  for st in $states; do\n",
            "    [ $# -gt 0 ] || break\n",
            "    case $st in active|reloading|refreshing) st=active ;; *) st=inactive ;; esac\n",
            "    printf 'HACTL\\tservice\\t%s\\t%s\\t\\n' \"$1\" \"$st\"; shift\n",
            "  done\n",
            "  for u in \"$@\"; do printf 'HACTL\\tservice\\t%s\\tinactive\\t\\n' \"$u\"; done\n",
            "fi\n",
        ));
    }
    s
}

/// The manifest from an observe script's `manifest-line` records (see [`observe_script`]):
/// its bytes, or none when the host has no manifest.
pub fn manifest_from_lines(stdout: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for line in stdout.lines() {
        if let Some(l) = line.strip_prefix("HACTL\tmanifest-line\t") {
            let buf = out.get_or_insert_with(Vec::new);
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
    }
    out
}

/// The current content of one file, for a diff: a `content` record, or nothing. The caller
/// asks only for regular, world-readable files that hold no secret (see
/// `crate::provider::hosts::observe`); the file is read as [`READER_UID`] with no groups
/// (util-linux `setpriv`), so even a file swapped for a link to a root-only file since it was
/// looked at gives nothing a host user could not read. A file that cannot be read so gives no
/// record, and the plan shows digests only.
fn fetch_one(path: &str) -> String {
    let path = q(path);
    format!(
        "if [ -f {path} ] && [ ! -L {path} ] && c=$(setpriv --reuid={READER_UID} --regid={READER_UID} --clear-groups -- base64 -w0 -- {path} 2>/dev/null); then printf 'HACTL\\tcontent\\t%s\\t%s\\n' {path} \"$c\"; fi"
    )
}

/// A file to write during apply.
#[derive(Debug, Clone)]
pub struct WriteFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
    pub check: Option<CheckKind>,
    /// The file exists and hactl did not write it: keep the original for `down`.
    pub backup_original: bool,
    /// A symbolic link at `path` is replaced by the file instead of refused (the stack's
    /// `files[].replace_symlink`).
    pub replace_symlink: bool,
    /// The content holds a secret (the stack marks the file sensitive): it travels
    /// base64-encoded, never as a literal in the script (see [`apply_script_at`]).
    pub sensitive: bool,
}

/// A file to remove during apply or down.
#[derive(Debug, Clone)]
pub struct RemoveFile {
    pub path: String,
    /// Put the original (kept at first write) back instead of deleting.
    pub restore: bool,
}

/// Everything one host's apply does, in order.
#[derive(Debug, Clone, Default)]
pub struct ApplySteps {
    pub writes: Vec<WriteFile>,
    pub removes: Vec<RemoveFile>,
    /// (verb, service): `start`, `reload`, `stop`. Stops run before any file is touched,
    /// starts and reloads after every file is in place.
    pub services: Vec<(String, String)>,
    pub manifest: ManifestOp,
}

/// What happens to hactl's record on the host.
#[derive(Debug, Clone, Default)]
pub enum ManifestOp {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Record this manifest.
    Write(Manifest),
    /// Remove hactl's records and kept originals (after `down` restored them).
    Remove,
}

/// Shell functions every apply script starts with.
///
/// - `set -C` (noclobber): every `>` creates its file exclusively (`O_CREAT|O_EXCL`), so a
///   redirection never follows a symlink or reuses a file someone planted at the name.
/// - `pin DIR` makes DIR the working directory and fails unless DIR, as written, is its
///   physical path (POSIX `cd -P` sets `$PWD` to the path without symlinks): no symlink and no
///   `..` anywhere on the way. Every later name is relative to that directory, which the
///   shell holds open: a host user who renames things on the path afterwards cannot redirect
///   the write, rename or removal to another directory.
/// - `root_only WORD...` succeeds when every word is the `stat -c %u:%A` of a directory only
///   root can change entries of (owned by uid 0, not writable by group or others, or sticky as
///   `/tmp` is); the apply script stats every checked directory it holds open on a descriptor
///   (`/proc/self/fd/N`) in one `stat`. A file a checker reads as root must be in such a
///   directory, or a host user could swap the checked file for a link to one they may not
///   read and get it printed in the checker's errors.
pub const APPLY_PRELUDE: &str = concat!(
    "set -u\n",
    "umask 077\n",
    "set -C\n",
    "fail() { printf 'HACTL\\tfail\\t%s\\t%s\\n' \"$1\" \"$2\"; }\n",
    "pin() { cd -P -- \"$1\" 2>/dev/null && [ \"$PWD\" = \"$1\" ]; }\n",
    "root_only() { [ $# -gt 0 ] || return 1; for m; do case $m in 0:d????-??-?|0:d????????[tT]) ;; *) return 1 ;; esac; done; }\n",
);

/// The apply script: [`apply_script_at`] with the stack's state directory on the host.
pub fn apply_script(stack: &str, steps: &ApplySteps, nonce: &str) -> String {
    apply_script_at(&state_dir(stack), stack, steps, nonce)
}

/// The apply script, keeping hactl's records in `state` (an absolute path; tests run it in a
/// temporary directory). `nonce` makes this run's temporary names unguessable (hex; the
/// caller draws it at random for every run).
///
/// Phases: stop services (down); write every new file beside its destination; check each
/// with its real binary; only if all pass, keep originals and rename into place; remove;
/// record the manifest; then start/reload services. A failed check removes the new files and
/// leaves the host untouched.
///
/// A host user may own a directory hactl writes into (a `files[].dest` under an app's
/// directory). Nothing they do there makes root write, chmod or chown anything else:
/// - every operation runs in its directory pinned by `pin` (see [`APPLY_PRELUDE`]), on names
///   relative to it; a directory path with a symlink in it is refused (`fail dir`);
/// - the temporary file is created exclusively under a name with the run's nonce, and its
///   mode and owner are set through the open descriptor (`/proc/self/fd/1`), so they apply to
///   the file hactl created even if its name is swapped meanwhile;
/// - a destination that is a symlink is refused (`fail symlink`), never written through;
/// - a checked file's directory must be root's alone (`fail unsafe-dir`), and the checker
///   reads it through `/proc/self/cwd`, the pinned directory;
/// - originals are kept with `cp -a` (which copies a link as a link) into the state
///   directory, made 0700 before anything is written there.
pub fn apply_script_at(state: &str, stack: &str, steps: &ApplySteps, nonce: &str) -> String {
    let mut s = String::from(APPLY_PRELUDE);
    let _ = writeln!(s, "S={}", q(state));
    // The state directories are root's alone from their first use, and made so on hosts
    // where an older hactl left them 0755. One `mkdir` makes every missing one, including
    // the directories originals may be kept in (phase 3): an unused one stays empty.
    let mut dirs = vec!["\"$S/backup\"".to_string()];
    for w in steps.writes.iter().filter(|w| w.backup_original) {
        let d = backup_path(dir_of(&w.path));
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let _ = writeln!(
        s,
        "set --; for d in {}; do [ -d \"$d\" ] || set -- \"$@\" \"$d\"; done",
        dirs.join(" ")
    );
    // On a host hactl never wrote to, `mkdir` makes them all, 0700 under the `umask 077`
    // (parents too: `mkdir -p` gives them u+wx on top of the umask's 0700), so the `chmod`
    // that fixes older ones is a process saved.
    let _ = writeln!(
        s,
        "fresh=; [ -d {parent} ] || fresh=1\n{{ [ $# -eq 0 ] || mkdir -p -- \"$@\"; }} && {{ [ -n \"$fresh\" ] || chmod 700 {parent} \"$S\" \"$S/backup\"; }} && {{ [ ! -d \"$S/app\" ] || chmod 700 \"$S/app\"; }} || {{ fail state \"$S\"; exit 1; }}",
        parent = q(dir_of(state))
    );
    let temps: Vec<String> = steps
        .writes
        .iter()
        .map(|w| format!("{}/{}", dir_of(&w.path), temp_name(&w.path, nonce)).replace("//", "/"))
        .collect();
    let cleanup = if temps.is_empty() {
        ":".to_string()
    } else {
        format!(
            "rm -f {}",
            temps
                .iter()
                .map(|t| q(t).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let _ = writeln!(s, "cleanup() {{ cd /; {cleanup}; }}");
    s.push_str("rc=0\n");
    let (stops, others): (Vec<_>, Vec<_>) =
        steps.services.iter().partition(|(verb, _)| verb == "stop");
    service_steps(&mut s, stack, &stops);
    // Phase 1: new files beside their destinations. Each temporary file is opened by the
    // shell itself on a descriptor (3 to 9: what every sh can name), filled by the `printf`
    // builtin (text) or `base64 -d`, and its mode and owner are set through that descriptor
    // (`/proc/self/fd/N`) for up to seven files at once: one `chmod` per mode and one `chown`
    // per owner in a batch instead of one of each per file. A file in a checked file's
    // directory whose mode `>` can give gets it from the umask instead, read back by phase 2's
    // one `stat` ([`mode_at_creation`]). `chown root` is skipped when the script already runs
    // as root (`[ -O / ]`: it owns `/`), since the file is then root's from its creation.
    let mut checked_dirs: Vec<&str> = Vec::new();
    for w in steps.writes.iter().filter(|w| w.check.is_some()) {
        if !checked_dirs.contains(&dir_of(&w.path)) {
            checked_dirs.push(dir_of(&w.path));
        }
    }
    let at_creation = |w: &WriteFile| mode_at_creation(w, &checked_dirs);
    for batch in steps.writes.chunks(7) {
        let mut fds: Vec<(u32, &WriteFile)> = Vec::new();
        for (i, w) in batch.iter().enumerate() {
            let fd = 3 + i as u32;
            let (dir, p) = (q(dir_of(&w.path)), q(&w.path));
            let name = q(base_of(&w.path));
            let t = q_temp(&w.path, nonce);
            // Forks are most of a first run's cost on the host: `mkdir` only when pinning fails.
            let _ = writeln!(
                s,
                "pin {dir} || {{ [ -d {dir} ] || mkdir -p {dir}; pin {dir}; }} || {{ cleanup; fail dir {p}; exit 1; }}"
            );
            if !w.replace_symlink {
                let _ = writeln!(
                    s,
                    "[ -L {name} ] && {{ cleanup; fail symlink {p}; exit 1; }}"
                );
            }
            // A mode the shell's `>` can give comes from the umask at creation (phase 2's
            // `stat` reads it back and `chmod` fixes it only if a default ACL changed it).
            if at_creation(w) {
                let _ = writeln!(s, "umask {:03o}", !w.mode & 0o777);
            }
            // `command exec`: a redirection that fails (a name planted under the temporary
            // name, with noclobber) returns an error instead of ending the shell.
            match literal(w) {
                Some(text) => {
                    let _ = writeln!(
                        s,
                        "command exec {fd}>{t} && {PRINTF} {text} >&{fd} || {{ cleanup; fail write {p}; exit 1; }}"
                    );
                }
                None => {
                    let _ = write!(s, "command exec {fd}>{t} && base64 -d >&{fd} ");
                    heredoc_b64(&mut s, &w.content);
                    let _ = writeln!(s, "[ $? -eq 0 ] || {{ cleanup; fail write {p}; exit 1; }}");
                }
            }
            if at_creation(w) {
                s.push_str("umask 077\n");
            }
            fds.push((fd, w));
        }
        let via = |group: &[&(u32, &WriteFile)]| {
            group
                .iter()
                .map(|(fd, _)| format!("/proc/self/fd/{fd}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut modes: Vec<u32> = fds
            .iter()
            .filter(|(_, w)| !at_creation(w))
            .map(|(_, w)| w.mode)
            .collect();
        modes.sort_unstable();
        modes.dedup();
        for mode in modes {
            let group: Vec<_> = fds
                .iter()
                .filter(|(_, w)| w.mode == mode && !at_creation(w))
                .collect();
            let _ = writeln!(
                s,
                "chmod {mode:o} {} || {{ cleanup; fail write {}; exit 1; }}",
                via(&group),
                q(&group[0].1.path)
            );
        }
        let mut owners: Vec<&str> = fds.iter().filter_map(|(_, w)| w.owner.as_deref()).collect();
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            let group: Vec<_> = fds
                .iter()
                .filter(|(_, w)| w.owner.as_deref() == Some(owner))
                .collect();
            let skip = if owner == "root" { "[ -O / ] || " } else { "" };
            let _ = writeln!(
                s,
                "{skip}chown {} {} || {{ cleanup; fail write {}; exit 1; }}",
                q(owner),
                via(&group),
                q(&group[0].1.path)
            );
        }
        // closed before any checker or service runs: nothing else inherits them
        let close = fds
            .iter()
            .map(|(fd, _)| format!("{fd}>&-"))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(s, "exec {close}");
    }
    // Phase 2: every check must pass before anything is activated. Each checked file's
    // directory is pinned and held open on a descriptor (3 to 9, seven at a time), one `stat`
    // proves all of them root's alone (and reads the modes of the files created in them, see
    // phase 1), and each checker then runs in its directory pinned again and proven the same
    // one (`-ef`: same device and inode) as the descriptor's.
    for batch in checked_dirs.chunks(7) {
        let fd_of = |dir: &str| batch.iter().position(|d| *d == dir).map(|i| 3 + i as u32);
        let mut via = Vec::new();
        for (i, dir) in batch.iter().enumerate() {
            let fd = 3 + i as u32;
            let first = steps
                .writes
                .iter()
                .find(|w| w.check.is_some() && dir_of(&w.path) == *dir)
                .map_or(String::new(), |w| q(&w.path).into_owned());
            let _ = writeln!(
                s,
                "pin {} && exec {fd}<. || {{ cleanup; fail unsafe-dir {first}; exit 1; }}",
                q(dir)
            );
            via.push(format!("/proc/self/fd/{fd}"));
        }
        let first = steps
            .writes
            .iter()
            .find(|w| w.check.is_some() && batch.contains(&dir_of(&w.path)))
            .map_or(String::new(), |w| q(&w.path).into_owned());
        // the files given their mode at creation in these directories, by name in them: a
        // name in a directory only root can change is root's to swap
        let made: Vec<(&WriteFile, String)> = steps
            .writes
            .iter()
            .filter(|w| at_creation(w))
            .filter_map(|w| {
                fd_of(dir_of(&w.path)).map(|fd| {
                    let t = format!("/proc/self/fd/{fd}/{}", temp_name(&w.path, nonce));
                    (w, q(&t).into_owned())
                })
            })
            .collect();
        let mut args = via.clone();
        args.extend(made.iter().map(|(_, t)| t.clone()));
        let _ = writeln!(
            s,
            "st=$(stat -L -c '%u:%A' -- {} 2>/dev/null) || st=\nset -f; set -- $st; set +f",
            args.join(" ")
        );
        let words = (1..=via.len())
            .map(|i| format!("\"${{{i}-}}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            s,
            "root_only {words} || {{ cleanup; fail unsafe-dir {first}; exit 1; }}"
        );
        for (i, (w, t)) in made.iter().enumerate() {
            let _ = writeln!(
                s,
                "case ${{{n}-}} in *:{want}) ;; *) chmod {mode:o} {t} || {{ cleanup; fail write {p}; exit 1; }} ;; esac",
                n = via.len() + 1 + i,
                want = mode_string(w.mode),
                mode = w.mode,
                p = q(&w.path)
            );
        }
        for w in steps
            .writes
            .iter()
            .filter(|w| w.check.is_some() && batch.contains(&dir_of(&w.path)))
        {
            let (Some(kind), Some(fd)) = (w.check, fd_of(dir_of(&w.path))) else {
                continue;
            };
            let (dir, p) = (q(dir_of(&w.path)), q(&w.path));
            let proc_path = format!("/proc/self/cwd/{}", temp_name(&w.path, nonce));
            let _ = writeln!(
                s,
                "pin {dir} && [ . -ef /proc/self/fd/{fd} ] || {{ cleanup; fail unsafe-dir {p}; exit 1; }}"
            );
            let _ = writeln!(
                s,
                "if ! out=$({} 2>&1); then cleanup; printf 'HACTL\\tcheck-failed\\t%s\\n' {p}; printf '%s\\n' \"$out\" | sed 's/^/HACTL\\tlog\\t/'; exit 3; fi",
                join(&cmd::check(kind, &proc_path)),
            );
        }
        let close = (0..batch.len())
            .map(|i| format!("{}<&-", 3 + i))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(s, "exec {close}");
    }
    // Phase 3: keep originals, rename into place.
    for w in &steps.writes {
        let (dir, p) = (q(dir_of(&w.path)), q(&w.path));
        let name = q(base_of(&w.path));
        let t = q_temp(&w.path, nonce);
        let _ = writeln!(s, "pin {dir} || {{ cleanup; fail dir {p}; exit 1; }}");
        if !w.replace_symlink {
            let _ = writeln!(
                s,
                "[ -L {name} ] && {{ cleanup; fail symlink {p}; exit 1; }}"
            );
        }
        if w.backup_original {
            let b = backup_path(&w.path);
            // its directory was made with the state's (see above)
            let _ = writeln!(
                s,
                "if [ -e {name} ] && [ ! -e {b} ]; then cp -a -- {name} {b}; fi"
            );
        }
        let _ = writeln!(
            s,
            "mv -fT -- {t} {name} && printf 'HACTL\\tok\\tfile\\t%s\\n' {p} || {{ cleanup; fail rename {p}; exit 1; }}"
        );
    }
    for r in &steps.removes {
        let (dir, p) = (q(dir_of(&r.path)), q(&r.path));
        let name = q(base_of(&r.path));
        let act = if r.restore {
            let b = backup_path(&r.path);
            format!(
                "if [ -e {b} ] || [ -L {b} ]; then mv -fT -- {b} {name}; else rm -f -- {name}; fi"
            )
        } else {
            format!("rm -f -- {name}")
        };
        // A directory that is gone has nothing to remove; one reached through a symlink is
        // refused like a write.
        let _ = writeln!(
            s,
            "if pin {dir}; then {act} && printf 'HACTL\\tok\\tremove\\t%s\\n' {p}; elif [ -e {dir} ] || [ -L {dir} ]; then rc=1; fail dir {p}; else printf 'HACTL\\tok\\tremove\\t%s\\n' {p}; fi"
        );
    }
    s.push_str("cd /\n");
    match &steps.manifest {
        ManifestOp::Write(m) => {
            let json = serde_json::to_vec_pretty(m).unwrap_or_default();
            let tmp = q(&format!(".manifest.json.hactl-{nonce}")).into_owned();
            // the manifest holds paths and digests, never content: a literal when it can be
            match shell_literal(&json) {
                Some(text) => {
                    let _ = write!(s, "pin \"$S\" && {PRINTF} {text} >{tmp} ");
                }
                None => {
                    let _ = write!(s, "pin \"$S\" && base64 -d >{tmp} ");
                    heredoc_b64(&mut s, &json);
                    s.push_str("[ $? -eq 0 ] ");
                }
            }
            let _ = writeln!(
                s,
                "&& mv -fT -- {tmp} manifest.json || {{ rc=1; fail manifest \"$S\"; }}\ncd /"
            );
        }
        ManifestOp::Remove => s.push_str("rm -rf \"$S\"\n"),
        ManifestOp::Keep => {}
    }
    service_steps(&mut s, stack, &others);
    s.push_str("exit $rc\n");
    s
}

/// Whether a write gets its mode from the umask when the shell creates it, instead of a
/// `chmod`: a mode `>` can give (0666 at most: no execute, set-id or sticky bit), for a file in
/// a directory of a checked file, whose one `stat` in phase 2 then reads the mode back (a
/// default ACL on the directory overrides the umask; the `chmod` runs only then).
fn mode_at_creation(w: &WriteFile, checked_dirs: &[&str]) -> bool {
    w.mode & !0o666 == 0 && checked_dirs.contains(&dir_of(&w.path))
}

/// A regular file's mode as `stat -c %A` prints it (`-rw-r--r--` for 0644; no set-id or
/// sticky bit, which [`mode_at_creation`] excludes).
fn mode_string(mode: u32) -> String {
    let mut out = String::from("-");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

/// `printf %s` with `PATH` pointing nowhere: dash, bash, ksh and busybox all have `printf` built
/// in, so the content never reaches an `exec`'s argv (where `ps` would show it); a shell
/// without the builtin finds no `printf` and the write fails instead.
const PRINTF: &str = "PATH=/nonexistent/hactl printf %s";

/// `content` as one single-quoted shell word, when it is text the shell carries unchanged:
/// printable ASCII, tabs and newlines only (no NUL, which a shell word cannot hold, and no
/// bytes a shell might treat as its own internal markers). Written by the `printf` builtin,
/// this costs no process on the host where `base64 -d` cost one per file.
fn shell_literal(content: &[u8]) -> Option<String> {
    let text = content
        .iter()
        .all(|&b| b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(content).ok())
        .flatten()?;
    // `q` single-quotes anything not plain, newlines included; the empty string is `''`
    Some(q(text).into_owned())
}

/// The literal a write is carried in, if any: never for a secret (sensitive content stays
/// base64 in the script, so the script as logged or snapshot shows no secret in clear).
fn literal(w: &WriteFile) -> Option<String> {
    if w.sensitive {
        return None;
    }
    shell_literal(&w.content)
}

/// The quoted temporary name of `dest` (relative to its pinned directory).
fn q_temp(dest: &str, nonce: &str) -> String {
    q(&temp_name(dest, nonce)).into_owned()
}

/// A `HACTL\tfail\t…` record of an apply script as a sentence for the report.
pub fn describe_fail(fields: &[String]) -> String {
    match fields {
        [kind, path] => match kind.as_str() {
            "dir" => format!(
                "refused to write `{path}`: its directory is not a plain path on the host (a symbolic link or `..` is on the way); nothing was changed on this host"
            ),
            "symlink" => format!(
                "refused to replace `{path}`: it is a symbolic link on the host; remove the link, or let `up` replace it with `replace_symlink: true` on the file (hactl never writes through a link); nothing was changed on this host"
            ),
            "unsafe-dir" => format!(
                "refused to check `{path}`: its directory can be changed by users other than root; nothing was changed on this host"
            ),
            "write" => format!("could not write `{path}` (or set its mode and owner)"),
            "rename" => format!("could not move the new `{path}` into place"),
            "state" => format!("could not prepare hactl's state directory `{path}`"),
            "manifest" => format!("could not record the manifest in `{path}`"),
            other => format!("{other} {path}"),
        },
        _ => fields.join(" "),
    }
}

/// Services in order; a failure is reported and the rest still run.
///
/// Consecutive system units with the same verb share one `systemctl` call (it takes several
/// units; every call is a process or more on the host, and the lab's stand-in is a bash
/// script), except keepalived: it claims the VIP, so it gets a call of its own after what it
/// fronts (the start order `render` gives: the app, what proxies to it, what routes to that,
/// the VIP last). Within one call systemd orders the jobs by the units' own dependencies. When
/// a shared call fails, each of its units is run alone to tell which failed: for the others
/// that repeats a start or stop (a no-op) or a reload.
fn service_steps(s: &mut String, stack: &str, services: &[&(String, String)]) {
    let shares = |svc: &str| svc != "app" && svc != "keepalived";
    let one = |verb: &str, svc: &str| {
        format!(
            "if out=$({} 2>&1); then printf 'HACTL\\tok\\tservice\\t%s\\t%s\\n' {v} {n}; else rc=1; printf 'HACTL\\tfail\\tservice\\t%s\\t%s\\n' {v} {n}; printf '%s\\n' \"$out\" | sed 's/^/HACTL\\tlog\\t/'; fi",
            join(&cmd::service(stack, verb, svc)),
            v = q(verb),
            n = q(svc)
        )
    };
    let mut i = 0;
    while i < services.len() {
        let verb = services[i].0.as_str();
        let mut j = i + 1;
        if shares(&services[i].1) {
            while j < services.len() && services[j].0 == verb && shares(&services[j].1) {
                j += 1;
            }
        }
        let group = &services[i..j];
        if let [(_, svc)] = group {
            let _ = writeln!(s, "{}", one(verb, svc));
        } else {
            let mut argv = vec!["systemctl".to_string(), verb.to_string()];
            argv.extend(group.iter().map(|(_, svc)| svc.clone()));
            let oks = group
                .iter()
                .map(|(_, svc)| {
                    format!(
                        "printf 'HACTL\\tok\\tservice\\t%s\\t%s\\n' {} {}",
                        q(verb),
                        q(svc)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(s, "if {} >/dev/null 2>&1; then {oks}; else", join(&argv));
            for (_, svc) in group {
                let _ = writeln!(s, "  {}", one(verb, svc));
            }
            s.push_str("fi\n");
        }
        i = j;
    }
}

/// The shell command a VRRP check runs (the same command keepalived's `vrrp_script` runs:
/// for an `http://` URL the bash probe of [`crate::render::http_probe`], for `https://`
/// curl), used by `status` and the serving wait to report check results and the effective
/// priority.
pub fn check_command(check: &crate::stack::model::CheckSpec) -> String {
    if let Some(svc) = &check.service {
        join(&cmd::systemctl("is-active", &svc.value)) + " --quiet"
    } else if let Some(url) = &check.http {
        let secs = format!("{}", check.run_timeout().as_secs_f64().max(0.01));
        match crate::render::http_probe::args(&url.value) {
            Some([host, port, target, header]) => join(&[
                "/bin/bash".into(),
                "-c".into(),
                crate::render::http_probe::PROGRAM.into(),
                "hactl-http-check".into(),
                host,
                port,
                target,
                header,
                secs,
            ]),
            None => join(&[
                "curl".into(),
                "-fsS".into(),
                "-m".into(),
                secs,
                "-o".into(),
                "/dev/null".into(),
                url.value.clone(),
            ]),
        }
    } else if let Some(script) = &check.script {
        script.value.clone()
    } else {
        "false".into()
    }
}

/// The status probe: services, whether the VIP is on the host, each check's result, and the
/// last recorded VRRP transition. Read-only.
pub fn status_script(
    vip: Option<&str>,
    instance: &str,
    services: &[String],
    checks: &[(String, String)],
) -> String {
    let mut s = String::from("set -u\n");
    for svc in services {
        let name = q(svc);
        let _ = writeln!(
            s,
            "if systemctl is-active --quiet {name} >/dev/null 2>&1; then printf 'HACTL\\tservice\\t%s\\tactive\\t\\n' {name}; else printf 'HACTL\\tservice\\t%s\\tinactive\\t\\n' {name}; fi"
        );
    }
    if let Some(vip) = vip {
        let _ = writeln!(
            s,
            "if ip -o addr show | grep -q \" inet6\\? {}/\"; then printf 'HACTL\\tvip\\tyes\\n'; else printf 'HACTL\\tvip\\tno\\n'; fi",
            vip.replace('.', "\\.")
        );
    }
    for (name, cmd) in checks {
        let _ = writeln!(
            s,
            "if timeout 3 sh -c {} >/dev/null 2>&1; then printf 'HACTL\\tcheck\\t%s\\tok\\n' {n}; else printf 'HACTL\\tcheck\\t%s\\tfail\\n' {n}; fi",
            q(cmd),
            n = q(name)
        );
    }
    let f = q(&vrrp_state_file(instance)).into_owned();
    let _ = writeln!(
        s,
        "if [ -f {f} ]; then printf 'HACTL\\ttransition\\t%s\\n' \"$(head -n1 {f})\"; fi"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onhost::record::{parse, Record};
    use crate::plan::hosts::ManifestFile;

    #[test]
    fn observe_script_snapshot() {
        let probes = vec![
            Probe {
                path: "/etc/nginx/nginx.conf".into(),
                want_sha256: Some("ab".repeat(32)),
                sensitive: false,
            },
            Probe {
                path: "/etc/keepalived/keepalived.conf".into(),
                want_sha256: Some("cd".repeat(32)),
                sensitive: true,
            },
        ];
        insta::assert_snapshot!(observe_script(
            "lab",
            &probes,
            &["nginx".into(), "keepalived".into()]
        ));
    }

    #[test]
    fn observe_reads_the_manifest_itself_and_asks_systemctl_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let bin = root.join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        // a systemctl that records each call and answers like systemd's, one state per unit
        let fake = bin.join("systemctl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$*\" >> {calls}\nfor u; do case $u in is-active) ;; rsyslog) echo active ;; redis-sentinel) echo reloading ;; *) echo inactive ;; esac; done\nexit 3\n",
                calls = root.join("calls").display()
            ),
        )
        .expect("write fake");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let state = root.join("state");
        std::fs::create_dir(&state).expect("mkdir");
        // hactl's manifest, with what a line-reading shell could get wrong: backslashes,
        // leading spaces, a tab escape, and no newline at the end
        let manifest = "{\n  \"stack\": \"t\",\n  \"files\": [{\"path\": \"/etc/a\\\\b\\tc\"}],\n  \"services\": []\n}";
        std::fs::write(state.join("manifest.json"), manifest).expect("write manifest");
        let services: Vec<String> = ["rsyslog", "redis-server@9001", "redis-sentinel"]
            .map(String::from)
            .into();
        let script = observe_script("t", &[], &services).replace(
            &format!("S={}", q(&state_dir("t"))),
            &format!("S={}", q(&state.display().to_string())),
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            manifest_from_lines(&text),
            Some(format!("{manifest}\n").into_bytes()),
            "{text}"
        );
        let services: Vec<_> = parse(&text)
            .into_iter()
            .filter_map(|r| match r {
                Record::Service { name, active, .. } => Some((name, active)),
                _ => None,
            })
            .collect();
        assert_eq!(
            services,
            [
                ("rsyslog".to_string(), true),
                ("redis-server@9001".to_string(), false),
                ("redis-sentinel".to_string(), true),
            ],
            "{text}"
        );
        let calls = std::fs::read_to_string(root.join("calls")).expect("calls");
        assert_eq!(
            calls, "is-active rsyslog redis-server@9001 redis-sentinel\n",
            "one systemctl for every service"
        );
        // no manifest: no record at all
        std::fs::remove_file(state.join("manifest.json")).expect("rm");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .expect("sh runs");
        assert_eq!(
            manifest_from_lines(&String::from_utf8_lossy(&out.stdout)),
            None
        );
    }

    #[test]
    fn apply_script_snapshot() {
        let steps = ApplySteps {
            writes: vec![
                WriteFile {
                    path: "/etc/nginx/nginx.conf".into(),
                    content: b"events {}\n".to_vec(),
                    mode: 0o644,
                    owner: None,
                    check: Some(CheckKind::Nginx),
                    backup_original: true,
                    replace_symlink: false,
                    sensitive: false,
                },
                WriteFile {
                    path: "/etc/keepalived/keepalived.conf".into(),
                    content: b"vrrp_instance VI_1 {}\n".to_vec(),
                    mode: 0o600,
                    owner: Some("root".into()),
                    check: Some(CheckKind::Keepalived),
                    backup_original: false,
                    replace_symlink: false,
                    sensitive: true,
                },
            ],
            removes: vec![RemoveFile {
                path: "/etc/old file.conf".into(),
                restore: true,
            }],
            services: vec![
                ("reload".into(), "nginx".into()),
                ("start".into(), "haproxy".into()),
                ("start".into(), "rsyslog".into()),
                ("start".into(), "keepalived".into()),
            ],
            manifest: ManifestOp::Write(Manifest {
                stack: "lab".into(),
                files: vec![ManifestFile {
                    path: "/etc/nginx/nginx.conf".into(),
                    sha256: "00".repeat(32),
                    backup: true,
                    sensitive: false,
                }],
                services: vec!["keepalived".into()],
            }),
        };
        insta::assert_snapshot!(apply_script("lab", &steps, "0123abcd"));
    }

    #[test]
    fn services_share_one_systemctl_call_and_a_failure_is_told_apart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        // a systemctl that records each call and fails any call naming `broken`
        let calls = dir.path().join("calls");
        std::fs::write(
            bin.join("systemctl"),
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nfor u; do [ \"$u\" != broken ] || {{ echo \"$u failed\" >&2; exit 1; }}; done\n",
                calls.display()
            ),
        )
        .expect("write fake");
        std::fs::set_permissions(
            bin.join("systemctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        let run = |services: &[(&str, &str)]| {
            let _ = std::fs::remove_file(&calls);
            let steps: Vec<(String, String)> = services
                .iter()
                .map(|(v, u)| (v.to_string(), u.to_string()))
                .collect();
            let mut s = String::from("rc=0\n");
            service_steps(&mut s, "t", &steps.iter().collect::<Vec<_>>());
            s.push_str("exit $rc\n");
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&s)
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        bin.display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                )
                .output()
                .expect("sh runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                std::fs::read_to_string(&calls).unwrap_or_default(),
            )
        };
        // keepalived, which claims the VIP, is started on its own after what it fronts
        let (ok, out, calls_made) = run(&[
            ("start", "nginx"),
            ("start", "haproxy"),
            ("start", "keepalived"),
        ]);
        assert!(ok, "{out}");
        assert_eq!(calls_made, "start nginx haproxy\nstart keepalived\n");
        assert_eq!(
            out,
            "HACTL\tok\tservice\tstart\tnginx\nHACTL\tok\tservice\tstart\thaproxy\nHACTL\tok\tservice\tstart\tkeepalived\n"
        );
        // a different verb is another call; a failed shared call is retried unit by unit
        let (ok, out, calls_made) = run(&[
            ("reload", "nginx"),
            ("start", "broken"),
            ("start", "haproxy"),
        ]);
        assert!(!ok, "{out}");
        assert_eq!(
            calls_made,
            "reload nginx\nstart broken haproxy\nstart broken\nstart haproxy\n"
        );
        assert!(
            out.contains("HACTL\tfail\tservice\tstart\tbroken\nHACTL\tlog\tbroken failed\n"),
            "{out}"
        );
        assert!(
            out.contains("HACTL\tok\tservice\tstart\thaproxy\n"),
            "{out}"
        );
        assert!(!out.contains("HACTL\tok\tservice\tstart\tbroken"), "{out}");
    }

    #[test]
    fn secrets_never_appear_in_the_script_in_clear() {
        let steps = ApplySteps {
            writes: vec![WriteFile {
                path: "/etc/app.env".into(),
                content: b"PASSWORD=hunter2-canary\n".to_vec(),
                mode: 0o600,
                owner: None,
                check: None,
                backup_original: false,
                replace_symlink: false,
                sensitive: true,
            }],
            ..Default::default()
        };
        let script = apply_script("lab", &steps, "0123abcd");
        assert!(!script.contains("hunter2-canary"));
    }

    /// `status` and the serving wait run a check as keepalived does: an `http://` URL through
    /// the same bash probe keepalived.conf names (curl only for `https://`).
    #[test]
    fn check_command_runs_the_probe_keepalived_runs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks/lab.yaml");
        let stack = crate::stack::load(&path).expect("lab.yaml");
        let vip = stack.file.vip.as_ref().expect("lab.yaml has a VIP");
        let mut check = vip.checks[0].clone();
        assert_eq!(
            check.http.as_ref().map(|h| h.value.as_str()),
            Some("http://127.0.0.1:80/healthz")
        );
        let probe = crate::render::http_probe::PROGRAM;
        assert_eq!(
            check_command(&check),
            format!(
                "/bin/bash -c {} hactl-http-check 127.0.0.1 80 /healthz 127.0.0.1 1",
                q(probe)
            )
        );
        check.http = Some(crate::stack::model::unspanned(
            "https://127.0.0.1/healthz".into(),
        ));
        assert_eq!(
            check_command(&check),
            "curl -fsS -m 1 -o /dev/null 'https://127.0.0.1/healthz'"
        );
    }

    #[test]
    fn status_script_snapshot() {
        insta::assert_snapshot!(status_script(
            Some("198.18.0.100"),
            "VI_1",
            &["nginx".into(), "keepalived".into()],
            &[(
                "nginx".into(),
                "curl -fsS -m 1 -o /dev/null http://127.0.0.1:80/healthz".into()
            )]
        ));
    }

    /// A host with a user-owned directory, in a temporary directory of this machine: the
    /// apply script runs here for real (as root, like on a host), with hactl's records in
    /// `state` and a root-only `victim` the user would like root to overwrite.
    struct Sandbox {
        _dir: tempfile::TempDir,
        root: String,
        victim: std::path::PathBuf,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            use std::os::unix::fs::PermissionsExt;
            assert!(
                unsafe { libc::geteuid() } == 0,
                "this test runs the apply script as root, as on a host: run the tests as root"
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let root = std::fs::canonicalize(dir.path())
                .expect("canonical tempdir")
                .display()
                .to_string();
            let victim = dir.path().join("victim");
            std::fs::write(&victim, "root only\n").expect("write victim");
            std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600))
                .expect("chmod victim");
            // the app user's own directory
            let user = dir.path().join("home");
            std::fs::create_dir(&user).expect("mkdir home");
            std::os::unix::fs::chown(&user, Some(65534), Some(65534)).expect("chown home");
            Sandbox {
                _dir: dir,
                root,
                victim,
            }
        }

        fn path(&self, rel: &str) -> String {
            format!("{}/{rel}", self.root)
        }

        fn run(&self, steps: &ApplySteps, nonce: &str) -> (bool, String) {
            let script = apply_script_at(&self.path("state"), "t", steps, nonce);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("sh runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), text)
        }

        fn assert_victim_untouched(&self) {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::symlink_metadata(&self.victim).expect("victim exists");
            assert_eq!(
                std::fs::read_to_string(&self.victim).expect("read victim"),
                "root only\n"
            );
            assert_eq!(meta.mode() & 0o7777, 0o600, "victim mode changed");
            assert_eq!((meta.uid(), meta.gid()), (0, 0), "victim owner changed");
        }
    }

    fn user_file(path: String) -> WriteFile {
        WriteFile {
            path,
            content: b"setting = 1\n".to_vec(),
            mode: 0o644,
            owner: Some("nobody".into()),
            check: None,
            backup_original: true,
            replace_symlink: false,
            sensitive: false,
        }
    }

    #[test]
    fn writes_carry_any_content_byte_for_byte() {
        // Text goes as a shell literal through the printf builtin, anything else (and every
        // secret) as base64: both must land exactly, and a literal costs no process.
        use std::os::unix::fs::MetadataExt;
        let sb = Sandbox::new();
        let contents: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "quotes",
                b"it's \"quoted\" 'twice'\n$HOME `id` $(id) \\n %s %% !x\n".to_vec(),
                false,
            ),
            ("no-newline", b"a\tb".to_vec(), false),
            ("trailing", b"x\n\n\n".to_vec(), false),
            ("empty", Vec::new(), false),
            ("utf8", "caf\u{e9} \u{c1}\n".as_bytes().to_vec(), false),
            ("binary", vec![0, 1, 0x81, 0xff, b'\n'], false),
            ("secret", b"PASSWORD=x\n".to_vec(), true),
        ];
        std::fs::create_dir(sb.path("etc")).expect("mkdir");
        let writes: Vec<WriteFile> = contents
            .iter()
            .map(|(name, content, sensitive)| WriteFile {
                path: sb.path(&format!("etc/{name}")),
                content: content.clone(),
                mode: 0o640,
                owner: None,
                check: None,
                backup_original: false,
                replace_symlink: false,
                sensitive: *sensitive,
            })
            .collect();
        let steps = ApplySteps {
            writes,
            ..Default::default()
        };
        let script = apply_script_at(&sb.path("state"), "t", &steps, "feedc0de");
        assert!(script.contains("printf %s 'it'\\''s"), "{script}");
        assert!(!script.contains("PASSWORD"), "a secret is never a literal");
        assert_eq!(
            script.matches("base64 -d").count(),
            3,
            "utf8, binary, secret: {script}"
        );
        let (ok, out) = sb.run(&steps, "feedc0de");
        assert!(ok, "{out}");
        for (name, content, _) in &contents {
            let p = sb.path(&format!("etc/{name}"));
            assert_eq!(&std::fs::read(&p).expect("written"), content, "{name}");
            assert_eq!(
                std::fs::metadata(&p).expect("meta").mode() & 0o7777,
                0o640,
                "{name}"
            );
        }
    }

    #[test]
    fn write_in_a_user_owned_dir_never_follows_a_planted_temp_symlink() {
        use std::os::unix::fs::MetadataExt;
        let sb = Sandbox::new();
        // the name older hactl versions used, and this run's name (as if guessed)
        std::os::unix::fs::symlink(&sb.victim, sb.path("home/.app.conf.hactl-new")).expect("plant");
        let steps = ApplySteps {
            writes: vec![user_file(sb.path("home/app.conf"))],
            ..Default::default()
        };
        let (ok, out) = sb.run(&steps, "feedc0de");
        assert!(ok, "{out}");
        sb.assert_victim_untouched();
        let meta = std::fs::symlink_metadata(sb.path("home/app.conf")).expect("written");
        assert!(meta.file_type().is_file());
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o644, 65534));
        assert_eq!(
            std::fs::read_to_string(sb.path("home/app.conf")).expect("read"),
            "setting = 1\n"
        );
        // a guessed temporary name is refused, not followed
        std::os::unix::fs::symlink(&sb.victim, sb.path("home/.app.conf.hactl-0badf00d"))
            .expect("plant");
        let mut steps = steps;
        steps.writes[0].content = b"setting = 2\n".to_vec();
        let (ok, out) = sb.run(&steps, "0badf00d");
        assert!(!ok, "{out}");
        assert!(out.contains("HACTL\tfail\twrite\t"), "{out}");
        sb.assert_victim_untouched();
        // the state directories are root's alone
        for d in ["state", "state/backup"] {
            let m = std::fs::metadata(sb.path(d)).expect("state dir").mode() & 0o777;
            assert_eq!(m, 0o700, "{d}");
        }
    }

    #[test]
    fn state_dirs_an_older_hactl_left_open_are_made_root_only() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let sb = Sandbox::new();
        for d in ["state", "state/backup"] {
            std::fs::create_dir(sb.path(d)).expect("mkdir");
            std::fs::set_permissions(sb.path(d), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let steps = ApplySteps {
            writes: vec![user_file(sb.path("home/app.conf"))],
            ..Default::default()
        };
        let (ok, out) = sb.run(&steps, "feedc0de");
        assert!(ok, "{out}");
        for d in ["state", "state/backup"] {
            let m = std::fs::metadata(sb.path(d)).expect("state dir").mode() & 0o777;
            assert_eq!(m, 0o700, "{d}");
        }
    }

    #[test]
    fn modes_given_at_creation_are_read_back_and_fixed_under_a_default_acl() {
        use std::os::unix::fs::MetadataExt;
        let sb = Sandbox::new();
        std::fs::create_dir(sb.path("etc")).expect("mkdir");
        let write = |name: &str, mode, check, content: &str| WriteFile {
            path: sb.path(&format!("etc/{name}")),
            content: content.as_bytes().to_vec(),
            mode,
            owner: None,
            check,
            backup_original: false,
            replace_symlink: false,
            sensitive: false,
        };
        let steps = |v: &str| ApplySteps {
            writes: vec![
                write("nginx.conf", 0o644, Some(CheckKind::Nginx), "events {}\n"),
                write("a.conf", 0o640, None, v),
                write("s.conf", 0o600, None, v),
                write("hook.sh", 0o700, None, v),
            ],
            ..Default::default()
        };
        let assert_modes = |out: &str| {
            for (name, mode) in [
                ("nginx.conf", 0o644),
                ("a.conf", 0o640),
                ("s.conf", 0o600),
                ("hook.sh", 0o700),
            ] {
                let meta = std::fs::metadata(sb.path(&format!("etc/{name}"))).expect("written");
                assert_eq!(meta.mode() & 0o7777, mode, "{name}: {out}");
            }
        };
        let script = apply_script_at(&sb.path("state"), "t", &steps("1\n"), "feedc0de");
        // one chmod in phase 1, for the mode `>` cannot give; the rest only if read back wrong
        assert_eq!(
            script.matches("chmod 700 /proc/self/fd/").count(),
            1,
            "{script}"
        );
        for m in ["644", "640", "600"] {
            assert!(
                !script.contains(&format!("chmod {m} /proc/self/fd/3 ")),
                "{script}"
            );
        }
        let (ok, out) = sb.run(&steps("1\n"), "feedc0de");
        assert!(ok, "{out}");
        assert_modes(&out);
        // a default ACL (u::rw-,g::rw-,o::rw-) overrides the umask: every file is created
        // 0666, and the read-back must put each mode right before anything is renamed
        let mut acl = 2u32.to_le_bytes().to_vec();
        for tag in [0x01u16, 0x04, 0x20] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&6u16.to_le_bytes());
            acl.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        let dir = std::ffi::CString::new(sb.path("etc")).expect("path");
        let name = std::ffi::CString::new("system.posix_acl_default").expect("name");
        // SAFETY: valid NUL-terminated strings and a buffer of the given length.
        let rc = unsafe {
            libc::setxattr(
                dir.as_ptr(),
                name.as_ptr(),
                acl.as_ptr().cast(),
                acl.len(),
                0,
            )
        };
        assert_eq!(
            rc,
            0,
            "setting a default ACL: {}",
            std::io::Error::last_os_error()
        );
        // the ACL is in force: a file created here is 0666 whatever the umask
        std::fs::write(sb.path("etc/probe"), "").expect("probe");
        let probe = std::fs::metadata(sb.path("etc/probe"))
            .expect("probe")
            .mode();
        assert_eq!(probe & 0o777, 0o666, "the default ACL did not apply");
        std::fs::remove_file(sb.path("etc/probe")).expect("rm probe");
        let (ok, out) = sb.run(&steps("2\n"), "c0ffee00");
        assert!(ok, "{out}");
        assert_modes(&out);
        assert_eq!(
            std::fs::read_to_string(sb.path("etc/a.conf")).expect("read"),
            "2\n"
        );
    }

    #[test]
    fn write_refuses_a_destination_that_is_a_symlink() {
        let sb = Sandbox::new();
        std::os::unix::fs::symlink(&sb.victim, sb.path("home/app.conf")).expect("plant");
        let steps = ApplySteps {
            writes: vec![user_file(sb.path("home/app.conf"))],
            ..Default::default()
        };
        let (ok, out) = sb.run(&steps, "feedc0de");
        assert!(!ok, "{out}");
        assert!(out.contains("HACTL\tfail\tsymlink\t"), "{out}");
        sb.assert_victim_untouched();
        // the link is left as it was, and no temporary file is left behind
        assert!(std::fs::symlink_metadata(sb.path("home/app.conf"))
            .expect("link")
            .file_type()
            .is_symlink());
        let left: Vec<_> = std::fs::read_dir(sb.path("home"))
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["app.conf"], "{left:?}");
    }

    #[test]
    fn replace_symlink_replaces_the_link_never_its_target() {
        let sb = Sandbox::new();
        std::os::unix::fs::symlink(&sb.victim, sb.path("home/app.conf")).expect("plant");
        let mut w = user_file(sb.path("home/app.conf"));
        w.replace_symlink = true;
        let steps = ApplySteps {
            writes: vec![w],
            ..Default::default()
        };
        let (ok, out) = sb.run(&steps, "feedc0de");
        assert!(ok, "{out}");
        sb.assert_victim_untouched();
        let meta = std::fs::symlink_metadata(sb.path("home/app.conf")).expect("written");
        assert!(
            meta.file_type().is_file(),
            "the link is replaced by the file"
        );
        // the original link is kept (as a link) for `down`
        let kept = format!("{}{}", sb.path("state/backup"), sb.path("home/app.conf"));
        assert!(std::fs::symlink_metadata(&kept)
            .expect("backup")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn write_and_remove_refuse_a_directory_reached_through_a_symlink() {
        let sb = Sandbox::new();
        // the user swaps a directory on the way for a link to a root directory
        std::fs::create_dir(sb.path("etc")).expect("mkdir");
        std::fs::write(sb.path("etc/app.conf"), "root's\n").expect("write");
        std::os::unix::fs::symlink(sb.path("etc"), sb.path("home/conf")).expect("plant");
        let steps = ApplySteps {
            writes: vec![user_file(sb.path("home/conf/app.conf"))],
            ..Default::default()
        };
        let (ok, out) = sb.run(&steps, "feedc0de");
        assert!(!ok, "{out}");
        assert!(out.contains("HACTL\tfail\tdir\t"), "{out}");
        let remove = ApplySteps {
            removes: vec![RemoveFile {
                path: sb.path("home/conf/app.conf"),
                restore: false,
            }],
            ..Default::default()
        };
        let (ok, out) = sb.run(&remove, "feedc0de");
        assert!(!ok, "{out}");
        assert!(out.contains("HACTL\tfail\tdir\t"), "{out}");
        assert_eq!(
            std::fs::read_to_string(sb.path("etc/app.conf")).expect("still there"),
            "root's\n"
        );
        assert!(describe_fail(&["dir".into(), "/x/y".into()]).contains("refused"));
    }

    #[test]
    fn a_checked_file_in_a_user_writable_dir_is_refused_before_its_checker_runs() {
        let sb = Sandbox::new();
        let mut w = user_file(sb.path("home/nginx.conf"));
        w.check = Some(CheckKind::Nginx);
        let steps = ApplySteps {
            writes: vec![w],
            ..Default::default()
        };
        let (ok, out) = sb.run(&steps, "feedc0de");
        assert!(!ok, "{out}");
        assert!(out.contains("HACTL\tfail\tunsafe-dir\t"), "{out}");
        assert!(!std::path::Path::new(&sb.path("home/nginx.conf")).exists());
    }

    #[test]
    fn observe_fetches_what_differs_as_an_unprivileged_user_and_never_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &std::path::Path, m| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        mode(dir.path(), 0o755);
        let file = |name: &str, content: &str, m| {
            let p = dir.path().join(name);
            std::fs::write(&p, content).expect("write");
            mode(&p, m);
            p.display().to_string()
        };
        let secret = file("secret", "root only\n", 0o600);
        let public = file("public", "hi", 0o644);
        let same = file("same", "as wanted\n", 0o644);
        let marked = file("marked", "the stack calls it sensitive\n", 0o644);
        let empty = file("it's empty", "", 0o644);
        let link = dir.path().join("link").display().to_string();
        std::os::unix::fs::symlink(&public, &link).expect("link");
        let probe = |path: &str, want: &str, sensitive| Probe {
            path: path.to_string(),
            want_sha256: Some(crate::plan::sha256_hex(want.as_bytes())),
            sensitive,
        };
        let probes = [
            probe(&secret, "x", false),
            probe(&link, "x", false),
            probe(&public, "x", false),
            probe(&same, "as wanted\n", false),
            probe(&marked, "x", true),
            probe(&empty, "x", false),
            probe(
                &dir.path().join("missing").display().to_string(),
                "x",
                false,
            ),
        ];
        let script = observe_script("t", &probes, &[]);
        crate::onhost::sh::assert_parses("the observe script", &script);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let contents: Vec<_> = parse(&text)
            .into_iter()
            .filter(|r| matches!(r, Record::Content { .. }))
            .collect();
        // the root-only file, the link, the file as wanted and the sensitive one give nothing
        assert_eq!(
            contents,
            vec![
                Record::Content {
                    path: public.clone(),
                    bytes: b"hi".to_vec()
                },
                Record::Content {
                    path: empty.clone(),
                    bytes: Vec::new()
                },
            ],
            "{text}"
        );
        // the digests and stats still come for every file
        let sums = crate::onhost::record::parse_sums(&text);
        assert_eq!(sums.len(), 5, "{text}");
        assert_eq!(
            parse(&text)
                .iter()
                .filter(|r| matches!(r, Record::Stat { .. }))
                .count(),
            6,
            "{text}"
        );
    }
}
