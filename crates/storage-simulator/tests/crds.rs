//! The committed CRDs under `crds/` are exactly what the types generate.
//! `UPDATE_CRDS=1 cargo test -p drbridge-storage-simulator --test crds` rewrites them.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use drbridge_storage_simulator::crds;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds")
}

fn committed() -> BTreeSet<String> {
    fs::read_dir(dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yaml"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn committed_crds_match_the_types() {
    let files = crds::files().expect("CRDs serialize");
    if std::env::var_os("UPDATE_CRDS").is_some() {
        fs::create_dir_all(dir()).unwrap();
        for stale in committed() {
            if !files.iter().any(|(n, _)| *n == stale) {
                fs::remove_file(dir().join(stale)).unwrap();
            }
        }
        for (name, yaml) in &files {
            fs::write(dir().join(name), yaml).unwrap();
        }
        return;
    }
    let generated: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        committed(),
        generated,
        "crates/storage-simulator/crds/ holds other files than the types generate; \
         run UPDATE_CRDS=1 cargo test -p drbridge-storage-simulator --test crds"
    );
    for (name, yaml) in &files {
        let on_disk = fs::read_to_string(dir().join(name)).unwrap();
        assert!(
            on_disk == *yaml,
            "crds/{name} is out of date; run UPDATE_CRDS=1 cargo test -p \
             drbridge-storage-simulator --test crds"
        );
    }
}

/// The names, scope and subresources Ramen and csi-addons rely on.
#[test]
fn crds_have_csi_addons_names() {
    let crds = crds::crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "volumereplicationclasses.replication.storage.openshift.io",
            "volumereplications.replication.storage.openshift.io",
        ]
    );
    let vr = &crds[1];
    assert_eq!(vr.spec.scope, "Namespaced");
    assert_eq!(
        vr.spec.names.short_names.as_deref(),
        Some(&["vr".to_owned()][..])
    );
    assert_eq!(
        vr.spec.names.list_kind.as_deref(),
        Some("VolumeReplicationList")
    );
    let v = &vr.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    let required: BTreeSet<_> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    // autoResync has a default, so it is not required of a client.
    for f in ["dataSource", "replicationState", "volumeReplicationClass"] {
        assert!(required.contains(f), "{f} not required");
    }
    assert_eq!(spec["properties"]["autoResync"]["default"], false);
    assert_eq!(
        spec["properties"]["replicationState"]["enum"],
        serde_json::json!(["primary", "secondary", "resync"])
    );
    let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
    for f in drbridge_storage_simulator::controller::STATUS_FIELDS {
        assert!(status.get(f).is_some(), "status.{f} missing");
    }
    let vrc = &crds[0];
    assert_eq!(vrc.spec.scope, "Cluster");
    assert_eq!(
        vrc.spec.names.short_names.as_deref(),
        Some(&["vrc".to_owned()][..])
    );
}
