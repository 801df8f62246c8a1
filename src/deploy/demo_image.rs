//! The lab's demo app image, built here with no registry and no image builder:
//! `hactl lab demo-image --version V [--broken] -o FILE.tar`.
//!
//! The output is a `docker-archive` (what `docker save` writes and `podman load` / `docker
//! load` read): `manifest.json`, an image config and one uncompressed layer. That format was
//! chosen over a plain rootfs for `podman import` because it carries the image's name and tag
//! (`localhost/hactl-demo:V`), its command and its environment, so the deploy flow can read
//! the reference from the archive itself and load it on every host the same way it would load
//! any real app's `docker save` output.
//!
//! The single layer is a busybox-static rootfs. At start the container writes `index.html`
//! (`V HOST`, the host from `HACTL_HOST`, which hactl's compose template sets) and runs busybox
//! `httpd` on `$PORT` (default 8080). `/healthz` is a static file; the `--broken` variant
//! ships without it, so its health endpoint answers 404 and every health gate fails.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

/// Where the rootfs's one binary comes from (Debian's `busybox-static`).
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The applets the image's command uses, linked to busybox.
const APPLETS: &[&str] = &[
    "sh", "httpd", "hostname", "printf", "echo", "cat", "mkdir", "sleep", "wget", "ls",
];

/// The image repository every demo version is tagged in.
pub const DEMO_REPO: &str = "localhost/hactl-demo";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DemoImageError {
    #[error("no static busybox found (looked at {})", BUSYBOX_CANDIDATES.join(", "))]
    #[diagnostic(
        code(hactl::lab::demo_image::busybox),
        help(
            "install Debian's `busybox-static` package: the demo image's rootfs is that one binary"
        )
    )]
    NoBusybox,
    #[error("`{}` is not a statically linked binary", path.display())]
    #[diagnostic(
        code(hactl::lab::demo_image::not_static),
        help("the image has no libc: install `busybox-static`, not `busybox`")
    )]
    NotStatic { path: PathBuf },
    #[error("version `{0}` is not a valid image tag")]
    #[diagnostic(
        code(hactl::lab::demo_image::version),
        help("use 1–64 characters from `[A-Za-z0-9_.-]`, not starting with `.` or `-`, e.g. `v2`")
    )]
    BadVersion(String),
    #[error("cannot {what} `{}`: {source}", path.display())]
    #[diagnostic(code(hactl::lab::demo_image::io))]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `demo-image` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoImage {
    pub path: PathBuf,
    /// `localhost/hactl-demo:V`, the name `podman load` gives it.
    pub reference: String,
    pub version: String,
    pub broken: bool,
    /// `sha256:…` of the image config: the image id.
    pub image_id: String,
    pub bytes: u64,
}

/// An image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (the OCI distribution rule), capped at 64.
pub fn valid_tag(v: &str) -> bool {
    let mut chars = v.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && v.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The container's command: write the page, then serve it. The shell stays PID 1 and turns
/// SIGTERM into a clean stop (a bare `httpd` as PID 1 ignores SIGTERM, so every stop would
/// wait out the whole grace period and end in SIGKILL).
pub fn start_command(version: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "printf '%s %s\\n' {version} \"${{HACTL_HOST:-$(hostname)}}\" > /www/index.html || exit 1; /bin/httpd -f -p \"${{PORT:-8080}}\" -h /www & pid=$!; trap 'kill $pid; exit 0' TERM INT; wait $pid"
        ),
    ]
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DemoImageError + 'a {
    move |source| DemoImageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    // Fixed time: the same inputs give the same image id.
    h.set_mtime(1_700_000_000);
    h
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, std::io::empty())
}

fn add_file(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)
}

fn add_link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path, target)
}

/// The rootfs layer (an uncompressed tar).
pub fn layer_tar(busybox: &[u8], broken: bool) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("www", 0o755),
        ("tmp", 0o1777),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
    ] {
        add_dir(&mut b, dir, mode)?;
    }
    add_file(&mut b, "bin/busybox", 0o755, busybox)?;
    for applet in APPLETS {
        add_link(&mut b, &format!("bin/{applet}"), "busybox")?;
    }
    add_file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\n")?;
    add_file(&mut b, "etc/group", 0o644, b"root:x:0:\n")?;
    if !broken {
        add_file(&mut b, "www/healthz", 0o644, b"ok\n")?;
    }
    b.into_inner()
}

/// The whole docker-archive, in memory, and the image id.
pub fn archive(busybox: &[u8], version: &str, broken: bool) -> std::io::Result<(Vec<u8>, String)> {
    let layer = layer_tar(busybox, broken)?;
    let diff_id = hex::encode(Sha256::digest(&layer));
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/bin", "PORT=8080"],
            "Cmd": start_command(version),
            "ExposedPorts": {"8080/tcp": {}},
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.version": version,
                "dev.hactl.demo.broken": broken.to_string(),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "hactl lab demo-image"}],
    });
    let config_bytes = serde_json::to_vec(&config).map_err(std::io::Error::other)?;
    let config_id = hex::encode(Sha256::digest(&config_bytes));
    let reference = format!("{DEMO_REPO}:{version}");
    let manifest = json!([{
        "Config": format!("{config_id}.json"),
        "RepoTags": [reference],
        "Layers": [format!("{diff_id}/layer.tar")],
    }]);
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, &diff_id, 0o755)?;
    add_file(&mut b, &format!("{diff_id}/layer.tar"), 0o644, &layer)?;
    add_file(&mut b, &format!("{config_id}.json"), 0o644, &config_bytes)?;
    add_file(&mut b, "manifest.json", 0o644, &manifest_bytes)?;
    Ok((b.into_inner()?, format!("sha256:{config_id}")))
}

/// Finds the static busybox.
pub fn find_busybox() -> Result<PathBuf, DemoImageError> {
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(DemoImageError::NoBusybox)
}

/// True when an ELF file has no `PT_INTERP` program header (no dynamic loader).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != PT_INTERP)
            .unwrap_or(true)
    })
}

/// Builds the demo image and writes it to `out` (0644: it holds nothing secret).
pub fn write(version: &str, broken: bool, out: &Path) -> Result<DemoImage, DemoImageError> {
    if !valid_tag(version) {
        return Err(DemoImageError::BadVersion(version.to_string()));
    }
    let bb_path = find_busybox()?;
    let busybox = std::fs::read(&bb_path).map_err(io("read", &bb_path))?;
    if !is_static_elf(&busybox) {
        return Err(DemoImageError::NotStatic { path: bb_path });
    }
    let (bytes, image_id) = archive(&busybox, version, broken).map_err(io("build", out))?;
    let tmp = out.with_extension("tar.partial");
    std::fs::write(&tmp, &bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, out).map_err(io("write", out))?;
    Ok(DemoImage {
        path: out.to_path_buf(),
        reference: format!("{DEMO_REPO}:{version}"),
        version: version.to_string(),
        broken,
        image_id,
        bytes: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, data)
            })
            .collect()
    }

    #[test]
    fn archive_is_a_docker_archive_with_name_and_matching_digests() {
        let (bytes, id) = archive(b"\x7fELF fake busybox", "v2", false).unwrap();
        let files = entries(&bytes);
        let get = |name: &str| {
            files
                .iter()
                .find(|(p, _)| p == name)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| {
                    panic!(
                        "{name} missing from {:?}",
                        files.iter().map(|f| &f.0).collect::<Vec<_>>()
                    )
                })
        };
        let manifest: serde_json::Value = serde_json::from_slice(&get("manifest.json")).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "localhost/hactl-demo:v2");
        let config_name = manifest[0]["Config"].as_str().unwrap();
        let config_bytes = get(config_name);
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&config_bytes))),
            id
        );
        let layer = get(manifest[0]["Layers"][0].as_str().unwrap());
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{}", hex::encode(Sha256::digest(&layer)))
        );
        let rootfs: Vec<String> = entries(&layer).into_iter().map(|(p, _)| p).collect();
        assert!(rootfs.contains(&"bin/busybox".to_string()));
        assert!(rootfs.contains(&"www/healthz".to_string()));
        assert!(config["config"]["Cmd"][2].as_str().unwrap().contains("v2"));
    }

    #[test]
    fn broken_image_has_no_health_file_and_a_different_id() {
        let (ok, ok_id) = archive(b"bb", "v3", false).unwrap();
        let (bad, bad_id) = archive(b"bb", "v3", true).unwrap();
        assert_ne!(ok_id, bad_id);
        let layer_paths = |bytes: &[u8]| -> Vec<String> {
            let outer = entries(bytes);
            let layer = &outer
                .iter()
                .find(|(p, _)| p.ends_with("layer.tar"))
                .unwrap()
                .1;
            entries(layer).into_iter().map(|(p, _)| p).collect()
        };
        assert!(layer_paths(&ok).contains(&"www/healthz".to_string()));
        assert!(!layer_paths(&bad).contains(&"www/healthz".to_string()));
    }

    #[test]
    fn same_inputs_same_image_id() {
        assert_eq!(
            archive(b"bb", "v1", false).unwrap().1,
            archive(b"bb", "v1", false).unwrap().1
        );
    }

    #[test]
    fn tags() {
        for good in ["v1", "1.2.3", "v2-rc_1", "_x"] {
            assert!(valid_tag(good), "{good}");
        }
        for bad in ["", "-v", ".v", "v 1", "v/1", "v:1", &"x".repeat(65)] {
            assert!(!valid_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn static_detection_on_this_machines_binaries() {
        let bb = std::fs::read(find_busybox().expect("busybox-static is installed")).unwrap();
        assert!(is_static_elf(&bb), "busybox-static must be static");
        let sh = std::fs::read("/bin/bash").expect("/bin/bash exists");
        assert!(!is_static_elf(&sh), "bash is dynamically linked");
    }
}
