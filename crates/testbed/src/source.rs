//! Finding, verifying and unpacking the upstream source snapshots (Ramen and
//! the sample workloads). The Go module proxy does not serve Ramen, so it is
//! built from a source tarball or tree named by the user, or found beside the
//! clone as CI lays it out (`../shared/upstream/`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// Environment variable naming Ramen's source: a `.tar.gz` or an unpacked tree.
pub const RAMEN_SOURCE_ENV: &str = "DRBRIDGE_RAMEN_SOURCE";
/// Environment variable naming the ocm-ramen-samples source (tarball or tree).
pub const SAMPLES_SOURCE_ENV: &str = "DRBRIDGE_RAMEN_SAMPLES_SOURCE";

/// A source snapshot as given: a tarball to unpack, or a tree to use in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Tarball(PathBuf),
    Tree(PathBuf),
}

impl Source {
    fn from_path(p: PathBuf) -> Result<Source, Error> {
        if p.is_dir() {
            Ok(Source::Tree(p))
        } else if p.is_file() {
            Ok(Source::Tarball(p))
        } else {
            Err(Error::NoSource {
                what: p.display().to_string(),
                hint: "the path does not exist".into(),
            })
        }
    }
}

/// Ramen's source: `explicit`, else `$DRBRIDGE_RAMEN_SOURCE`, else the one
/// `ramen-*.tar.gz` in a `shared/upstream` beside `repo_root` or one of its
/// ancestors.
pub fn ramen(explicit: Option<PathBuf>, repo_root: &Path) -> Result<Source, Error> {
    find("ramen", RAMEN_SOURCE_ENV, explicit, repo_root)
}

/// The ocm-ramen-samples source, found as [`ramen`] finds Ramen's.
pub fn samples(explicit: Option<PathBuf>, repo_root: &Path) -> Result<Source, Error> {
    find("ocm-ramen-samples", SAMPLES_SOURCE_ENV, explicit, repo_root)
}

fn find(
    stem: &str,
    env: &str,
    explicit: Option<PathBuf>,
    repo_root: &Path,
) -> Result<Source, Error> {
    if let Some(p) = explicit.or_else(|| std::env::var_os(env).map(PathBuf::from)) {
        return Source::from_path(p);
    }
    let mut looked = Vec::new();
    for dir in repo_root.ancestors().skip(1) {
        let upstream = dir.join("shared").join("upstream");
        looked.push(upstream.display().to_string());
        let Ok(entries) = fs::read_dir(&upstream) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| is_snapshot_name(n, stem))
            })
            .collect();
        found.sort();
        match found.len() {
            0 => continue,
            1 => return Ok(Source::Tarball(found.remove(0))),
            _ => {
                return Err(Error::NoSource {
                    what: stem.into(),
                    hint: format!(
                        "{} holds several snapshots ({}); name one with {env}",
                        upstream.display(),
                        found
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    Err(Error::NoSource {
        what: stem.into(),
        hint: format!(
            "the Go module proxy does not serve it; set {env} to its source tarball or tree \
             (looked in {})",
            looked.join(", ")
        ),
    })
}

/// `ramen-a78c2e37.tar.gz` for stem `ramen`, not `ramen-foo-bar.tar.gz` of
/// another project whose name merely starts the same.
fn is_snapshot_name(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".tar.gz"))
        .is_some_and(|rev| !rev.is_empty() && rev.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The checksum `SHA256SUMS` (in `sha256sum` format) lists for `file`.
pub fn listed_sum(sums: &str, file: &str) -> Option<String> {
    sums.lines().find_map(|l| {
        let (sum, name) = l.split_once(char::is_whitespace)?;
        // `sha256sum -b` marks binary mode with a leading '*'.
        let name = name.trim_start().trim_start_matches('*');
        (name == file).then(|| sum.to_ascii_lowercase())
    })
}

/// Checks a tarball against the `SHA256SUMS` beside it, when there is one,
/// and returns its digest. A tarball without a sums file is accepted (a user's
/// own snapshot) and keyed by its digest.
pub fn verify(tarball: &Path) -> Result<String, Error> {
    let actual = sha256_file(tarball)?;
    let sums_path = tarball.with_file_name("SHA256SUMS");
    let Ok(sums) = fs::read_to_string(&sums_path) else {
        return Ok(actual);
    };
    let file = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match listed_sum(&sums, file) {
        Some(expected) if expected == actual => Ok(actual),
        Some(expected) => Err(Error::Checksum {
            file: tarball.to_path_buf(),
            expected,
            actual,
        }),
        None => Err(Error::Checksum {
            file: tarball.to_path_buf(),
            expected: format!("an entry in {}", sums_path.display()),
            actual,
        }),
    }
}

/// The unpacked tree of a source: the tree itself, or the tarball verified
/// and unpacked once into `CACHE/src/<name>` (a tarball holds one folder named
/// like the file). Returns the tree and a version string to key builds by.
pub fn unpack(source: &Source, cache: &Path) -> Result<(PathBuf, String), Error> {
    let tarball = match source {
        Source::Tree(dir) => {
            // A tree may change under us; key by its path and let Go's own
            // build cache decide what to recompile.
            let key = hex::encode(&Sha256::digest(dir.display().to_string().as_bytes())[..6]);
            return Ok((dir.clone(), format!("tree-{key}")));
        }
        Source::Tarball(t) => t,
    };
    let sum = verify(tarball)?;
    let name = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.gz"))
        .ok_or_else(|| Error::NoSource {
            what: tarball.display().to_string(),
            hint: "expected a .tar.gz".into(),
        })?
        .to_string();
    let src = cache.join("src");
    let tree = src.join(&name);
    let marker = src.join(format!(".{name}.sha256"));
    let version = format!("{name}-{}", &sum[..12]);
    if tree.is_dir() && fs::read_to_string(&marker).ok().as_deref() == Some(sum.as_str()) {
        return Ok((tree, version));
    }
    // The tree stays at one path for every build of this snapshot: Go's build
    // cache keys the main module's packages by their directory.
    let staging = src.join(format!(".unpack-{name}"));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(&staging)
        .output()
        .map_err(|e| Error::io(Path::new("tar"), e))?;
    if !out.status.success() {
        return Err(Error::Unpack {
            file: tarball.to_path_buf(),
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let inner = staging.join(&name);
    if !inner.is_dir() {
        return Err(Error::Unpack {
            file: tarball.to_path_buf(),
            why: format!("it does not hold one folder named {name}"),
        });
    }
    let _ = fs::remove_dir_all(&tree);
    fs::rename(&inner, &tree).map_err(|e| Error::io(&tree, e))?;
    let _ = fs::remove_dir_all(&staging);
    fs::write(&marker, &sum).map_err(|e| Error::io(&marker, e))?;
    Ok((tree, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        assert!(is_snapshot_name("ramen-a78c2e37.tar.gz", "ramen"));
        assert!(!is_snapshot_name("ramen-a78c2e37.tar", "ramen"));
        assert!(!is_snapshot_name("ramen-.tar.gz", "ramen"));
        assert!(!is_snapshot_name("ramen-extra-a78c.tar.gz", "ramen"));
        assert!(is_snapshot_name(
            "ocm-ramen-samples-7a778cca.tar.gz",
            "ocm-ramen-samples"
        ));
        assert!(!is_snapshot_name(
            "ocm-ramen-samples-7a778cca.tar.gz",
            "ramen"
        ));
    }

    #[test]
    fn sums_file_lookup() {
        let sums = "AB12  ramen-1.tar.gz\ncd34 *samples-2.tar.gz\n";
        assert_eq!(listed_sum(sums, "ramen-1.tar.gz").as_deref(), Some("ab12"));
        assert_eq!(
            listed_sum(sums, "samples-2.tar.gz").as_deref(),
            Some("cd34")
        );
        assert_eq!(listed_sum(sums, "other.tar.gz"), None);
    }

    #[test]
    fn a_tampered_tarball_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("ramen-abc.tar.gz");
        fs::write(&t, b"not what was published").unwrap();
        fs::write(
            dir.path().join("SHA256SUMS"),
            format!("{}  ramen-abc.tar.gz\n", "0".repeat(64)),
        )
        .unwrap();
        assert!(matches!(verify(&t), Err(Error::Checksum { .. })));
        let good = sha256_file(&t).unwrap();
        fs::write(
            dir.path().join("SHA256SUMS"),
            format!("{good}  ramen-abc.tar.gz\n"),
        )
        .unwrap();
        assert_eq!(verify(&t).unwrap(), good);
    }

    #[test]
    fn found_beside_an_ancestor_of_the_clone() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path().join("shared/upstream");
        fs::create_dir_all(&up).unwrap();
        fs::write(up.join("ramen-abc123.tar.gz"), b"x").unwrap();
        let clone = dir.path().join("wt/clone");
        fs::create_dir_all(&clone).unwrap();
        // SAFETY-free: the variable is only read; make sure it does not leak in.
        if std::env::var_os(RAMEN_SOURCE_ENV).is_none() {
            assert_eq!(
                ramen(None, &clone).unwrap(),
                Source::Tarball(up.join("ramen-abc123.tar.gz"))
            );
        }
        assert_eq!(
            ramen(Some(clone.clone()), &clone).unwrap(),
            Source::Tree(clone)
        );
    }
}
