//! The test bed's programs, built once into the cache (`~/.cache/drbridge`)
//! and keyed by version, as the control planes are: Ramen's manager and e2e
//! binary from its source snapshot, Velero with the AWS plugin, KWOK and
//! versitygw from the Go module proxy.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drbridge_localenv::Progress;
use drbridge_localenv::gobuild::{GoProgram, go_binary};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::source::{self, Source};

pub const VELERO_VERSION: &str = "v1.18.3";
/// The plugin release that matches Velero 1.18 (it pins velero v1.18.1).
pub const VELERO_AWS_PLUGIN_VERSION: &str = "v1.14.3";
pub const KWOK_VERSION: &str = "v0.8.0";
pub const VERSITYGW_VERSION: &str = "v1.8.0";
/// Velero's go.mod replaces kopia with its fork; a wrapper module must too.
/// And the Go module proxy refuses k8s.io/cli-runtime v0.33.11 and v0.33.12
/// (Velero 1.18.3 wants v0.33.12): the closest served patch release of the
/// same minor stands in (measured: v0.33.10 is served).
const VELERO_REPLACES: &[&str] = &[
    "github.com/kopia/kopia => github.com/project-velero/kopia v0.0.0-20251230033609-d946b1e75197",
    "k8s.io/cli-runtime => k8s.io/cli-runtime v0.33.10",
];

/// One `go` invocation of a [`SourceBuild`].
#[derive(Clone, Debug)]
pub struct Step {
    /// Directory under the module root to run in.
    pub subdir: &'static str,
    /// `go` arguments before `-o OUT`, e.g. `["build"]` or `["test", "-c"]`.
    pub command: Vec<&'static str>,
    /// The binary it writes into the cache.
    pub binary: &'static str,
    /// What to build, e.g. `./cmd` (empty for `go test -c` of the directory).
    pub target: String,
}

/// A build in a Go module tree of its own (Ramen's checkout, or a wrapper
/// module we generate), unlike [`GoProgram`], which generates plain requires.
#[derive(Clone, Debug)]
pub struct SourceBuild {
    pub name: &'static str,
    pub version: String,
    /// The module root.
    pub dir: PathBuf,
    pub steps: Vec<Step>,
    /// `GOFLAGS` for every step.
    pub goflags: &'static str,
    /// Generated files (go.mod, main.go) whose change must build again.
    pub key_inputs: Vec<String>,
}

impl SourceBuild {
    fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.dir.display().to_string());
        h.update(self.goflags);
        for i in &self.key_inputs {
            h.update(i);
        }
        for s in &self.steps {
            h.update(s.subdir);
            h.update(s.command.join(" "));
            h.update(s.binary);
            h.update(&s.target);
        }
        hex::encode(&h.finalize()[..6])
    }

    pub fn bin_dir(&self, cache: &Path) -> PathBuf {
        cache
            .join("bin")
            .join(format!("{}-{}-{}", self.name, self.version, self.key()))
    }

    /// Builds every step unless the cache has the result; concurrent callers
    /// wait on a file lock instead of building twice.
    pub fn ensure(&self, cache: &Path, progress: &dyn Fn(Progress)) -> Result<PathBuf, Error> {
        let bin_dir = self.bin_dir(cache);
        let done = bin_dir.join(".complete");
        let cached = || Progress::Cached {
            name: self.name.into(),
            version: self.version.clone(),
        };
        if done.exists() {
            progress(cached());
            return Ok(bin_dir);
        }
        let locks = cache.join("locks");
        fs::create_dir_all(&locks).map_err(|e| Error::io(&locks, e))?;
        let lock_path = locks.join(format!("{}.lock", self.name));
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        if done.exists() {
            progress(cached());
            return Ok(bin_dir);
        }
        let go = go_binary()?;
        let staging = cache
            .join("bin")
            .join(format!(".staging-{}-{}", self.name, self.key()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let started = Instant::now();
        for step in &self.steps {
            let dir = self.dir.join(step.subdir);
            let mut cmd = Command::new(&go);
            cmd.current_dir(&dir)
                .args(&step.command)
                .arg("-v")
                .arg("-o")
                .arg(staging.join(step.binary));
            if !step.target.is_empty() {
                cmd.arg(&step.target);
            }
            cmd.env("GOFLAGS", self.goflags)
                .env("GOTOOLCHAIN", "local")
                .env("CGO_ENABLED", "0");
            run_go(cmd, &|packages| {
                progress(Progress::Building {
                    name: format!("{} ({})", self.name, step.binary),
                    version: self.version.clone(),
                    packages,
                    elapsed: started.elapsed(),
                })
            })
            .map_err(|output| Error::GoBuild {
                program: format!("{} {} ({})", self.name, self.version, step.binary),
                dir: dir.clone(),
                output,
            })?;
        }
        let _ = fs::remove_dir_all(&bin_dir);
        fs::rename(&staging, &bin_dir).map_err(|e| Error::io(&bin_dir, e))?;
        fs::write(
            &done,
            format!("built in {}s\n", started.elapsed().as_secs()),
        )
        .map_err(|e| Error::io(&done, e))?;
        progress(Progress::Built {
            name: self.name.into(),
            version: self.version.clone(),
            elapsed: started.elapsed(),
        });
        Ok(bin_dir)
    }
}

/// Runs a `go build -v` style command, reporting the number of packages
/// compiled every two seconds; on failure returns the last lines of output.
fn run_go(mut cmd: Command, report: &dyn Fn(usize)) -> Result<(), String> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut packages = 0usize;
    let mut tail: Vec<String> = Vec::new();
    let mut last = Instant::now();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if !line.starts_with("go: ") && !line.starts_with('#') && !line.contains(' ') {
            packages += 1;
        }
        if tail.len() == 30 {
            tail.remove(0);
        }
        tail.push(line);
        if last.elapsed() >= Duration::from_secs(2) {
            last = Instant::now();
            report(packages);
        }
    }
    match child.wait() {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err(tail.join("\n")),
        Err(e) => Err(e.to_string()),
    }
}

/// Ramen's manager (`./cmd`, both operators) and its e2e test binary, built
/// in the unpacked snapshot.
pub fn ramen(tree: PathBuf, version: String) -> SourceBuild {
    SourceBuild {
        name: "ramen",
        version,
        dir: tree,
        steps: vec![
            Step {
                subdir: ".",
                command: vec!["build"],
                binary: "ramen-manager",
                target: "./cmd".into(),
            },
            Step {
                subdir: "e2e",
                command: vec!["test", "-c"],
                binary: "ramen-e2e",
                target: String::new(),
            },
        ],
        goflags: "-buildvcs=false",
        key_inputs: vec![],
    }
}

/// Velero's server through a wrapper module that carries Velero's own
/// `replace` (a dependency's replaces do not apply to its dependents), with
/// the launcher [`VELERO_MAIN`].
pub fn velero(cache: &Path) -> Result<SourceBuild, Error> {
    let dir = cache.join("build").join(format!("velero-{VELERO_VERSION}"));
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let go_mod = format!(
        "// Generated by drbridge-testbed; builds velero {VELERO_VERSION}.\n\
         module drbridge.local/build/velero\n\n\
         go 1.26.0\n\n\
         require github.com/vmware-tanzu/velero {VELERO_VERSION}\n\n\
         replace (\n\t{}\n)\n",
        VELERO_REPLACES.join("\n\t")
    );
    let path = dir.join("go.mod");
    if fs::read_to_string(&path).ok().as_deref() != Some(go_mod.as_str()) {
        fs::write(&path, &go_mod).map_err(|e| Error::io(&path, e))?;
        let _ = fs::remove_file(dir.join("go.sum"));
    }
    let main = dir.join("main.go");
    if fs::read_to_string(&main).ok().as_deref() != Some(VELERO_MAIN) {
        fs::write(&main, VELERO_MAIN).map_err(|e| Error::io(&main, e))?;
    }
    Ok(SourceBuild {
        name: "velero",
        version: VELERO_VERSION.into(),
        dir,
        steps: vec![Step {
            subdir: ".",
            command: vec!["build"],
            binary: "velero",
            target: ".".into(),
        }],
        goflags: "-mod=mod -buildvcs=false",
        key_inputs: vec![go_mod, VELERO_MAIN.into()],
    })
}

/// Velero's own command (what `cmd/velero` runs), except that
/// controller-runtime's metrics server, for which Velero has no flag and which
/// binds :8080 by default, is off: two Velero servers (one per managed
/// cluster) and anything else on the machine would collide on that port.
/// Velero's own metrics stay on `--metrics-address`.
const VELERO_MAIN: &str = r#"// Generated by drbridge-testbed: Velero's command with controller-runtime's
// default metrics listener (:8080, no flag to change it) turned off.
package main

import (
	"os"
	"path/filepath"

	"k8s.io/klog/v2"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/vmware-tanzu/velero/pkg/cmd"
	"github.com/vmware-tanzu/velero/pkg/cmd/velero"
)

func main() {
	defer klog.Flush()
	metricsserver.DefaultBindAddress = "0"
	err := velero.NewCommand(filepath.Base(os.Args[0])).Execute()
	cmd.CheckError(err)
}
"#;

fn module_program(name: &'static str, module: &str, version: &str, package: &str) -> GoProgram {
    GoProgram {
        name,
        version: version.into(),
        requires: vec![(module.into(), version.into())],
        replaces: vec![],
        packages: vec![(package.into(), name.into())],
        ldflags: "-s -w".into(),
        tags: Vec::new(),
        go_directive: "1.26.0",
        seed_go_sum: false,
    }
}

/// The AWS object store plugin; its binary is alone in its directory, which
/// becomes Velero's `--plugin-dir`.
pub fn velero_aws_plugin() -> GoProgram {
    module_program(
        "velero-plugin-for-aws",
        "github.com/vmware-tanzu/velero-plugin-for-aws",
        VELERO_AWS_PLUGIN_VERSION,
        "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws",
    )
}

pub fn kwok() -> GoProgram {
    module_program(
        "kwok",
        "sigs.k8s.io/kwok",
        KWOK_VERSION,
        "sigs.k8s.io/kwok/cmd/kwok",
    )
}

pub fn versitygw() -> GoProgram {
    module_program(
        "versitygw",
        "github.com/versity/versitygw",
        VERSITYGW_VERSION,
        "github.com/versity/versitygw/cmd/versitygw",
    )
}

/// KWOK's published "fast" stages (node Ready at once, pods Running and Ready,
/// deleted pods removed), copied from its module into the cache.
const KWOK_STAGES: &[&str] = &[
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
];

fn kwok_stages(cache: &Path) -> Result<PathBuf, Error> {
    let out = cache
        .join("bin")
        .join(format!("kwok-stages-{KWOK_VERSION}"));
    let file = out.join("stages.yaml");
    if file.exists() {
        return Ok(file);
    }
    let module = format!("sigs.k8s.io/kwok@{KWOK_VERSION}");
    let dir = go_module_dir(cache, &["mod", "download", "-json", &module])?;
    let mut all = String::new();
    for rel in KWOK_STAGES {
        let p = dir.join(rel);
        let text = fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        all.push_str("---\n");
        all.push_str(&text);
        if !text.ends_with('\n') {
            all.push('\n');
        }
    }
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let tmp = out.join(".stages.yaml");
    fs::write(&tmp, all).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, &file).map_err(|e| Error::io(&file, e))?;
    Ok(file)
}

/// The directory of a module in Go's module cache, from the JSON of
/// `go mod download -json M@V` or `go list -m -json M` (run in `cwd`, so the
/// version is the one that module's go.mod selects).
pub fn go_module_dir(cwd: &Path, args: &[&str]) -> Result<PathBuf, Error> {
    let go = go_binary()?;
    let o = Command::new(&go)
        .args(args)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-buildvcs=false")
        .current_dir(cwd)
        .output()
        .map_err(|e| Error::io(&go, e))?;
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    match info.get("Dir").and_then(|d| d.as_str()) {
        Some(d) if Path::new(d).is_dir() => Ok(PathBuf::from(d)),
        _ => Err(Error::GoBuild {
            program: format!("go {}", args.join(" ")),
            dir: cwd.to_path_buf(),
            output: String::from_utf8_lossy(&o.stderr).into_owned(),
        }),
    }
}

/// Where every program of the test bed is.
#[derive(Clone, Debug)]
pub struct Programs {
    /// Ramen's unpacked source tree (CRDs, hack/test CRDs, e2e).
    pub ramen_tree: PathBuf,
    pub ramen_manager: PathBuf,
    pub ramen_e2e: PathBuf,
    pub velero: PathBuf,
    /// Holds only the AWS plugin: Velero's `--plugin-dir`.
    pub velero_plugin_dir: PathBuf,
    pub kwok: PathBuf,
    pub kwok_stages: PathBuf,
    pub versitygw: PathBuf,
}

/// Builds (first time) or finds every program, one build at a time: the
/// machine has two cores and each Go build uses both.
pub fn ensure(
    ramen_source: &Source,
    cache: &Path,
    progress: &dyn Fn(Progress),
) -> Result<Programs, Error> {
    let (tree, version) = source::unpack(ramen_source, cache)?;
    let ramen = ramen(tree.clone(), version).ensure(cache, progress)?;
    let velero = velero(cache)?.ensure(cache, progress)?;
    let plugin = velero_aws_plugin().ensure(cache, progress)?;
    let kwok = kwok().ensure(cache, progress)?;
    let versitygw = versitygw().ensure(cache, progress)?;
    Ok(Programs {
        ramen_tree: tree,
        ramen_manager: ramen.join("ramen-manager"),
        ramen_e2e: ramen.join("ramen-e2e"),
        velero: velero.join("velero"),
        velero_plugin_dir: plugin,
        kwok: kwok.join("kwok"),
        kwok_stages: kwok_stages(cache)?,
        versitygw: versitygw.join("versitygw"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_tree_and_steps() {
        let a = ramen(PathBuf::from("/a"), "v".into());
        let b = ramen(PathBuf::from("/b"), "v".into());
        assert_ne!(a.bin_dir(Path::new("/c")), b.bin_dir(Path::new("/c")));
        let mut c = ramen(PathBuf::from("/a"), "v".into());
        c.steps.pop();
        assert_ne!(a.bin_dir(Path::new("/c")), c.bin_dir(Path::new("/c")));
    }

    #[test]
    fn velero_wrapper_carries_the_kopia_replace() {
        let dir = tempfile::tempdir().unwrap();
        let b = velero(dir.path()).unwrap();
        let m = fs::read_to_string(b.dir.join("go.mod")).unwrap();
        assert!(m.contains("require github.com/vmware-tanzu/velero v1.18.3"));
        assert!(m.contains("\tgithub.com/kopia/kopia => github.com/project-velero/kopia"));
        assert!(m.contains("\tk8s.io/cli-runtime => k8s.io/cli-runtime v0.33.10"));
    }
}
