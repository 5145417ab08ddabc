//! `deploy/` validated as far as this machine can: every YAML file under `deploy/` and
//! `dashboards/` parses; the Kubernetes manifests fit together (one job file and one volume
//! per StatefulSet replica, ports, probes, secrets, honorLabels) and `kubectl kustomize`
//! builds them; every shipped job file loads with [`JobConfig`]; the example job file names
//! every key of the README's reference and the binary accepts it (`ferry migrate --dry-run`
//! against the test environment); the systemd units pass `systemd-analyze verify`; the
//! Dockerfile copies only files that exist and installs the RocksDB library; the RocksMQ
//! examples (`deploy/rocksmq/`: compose file, job file, Kubernetes sidecar) mount the
//! standalone's data read-only from the very volume Milvus writes, keep ferry's state on a
//! volume of its own, and point `[source.wal] rocksmq` at that mount. (Building the image and
//! running the compose file need a Docker daemon, which this machine does not have.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::config::JobConfig;
use serde_yaml_ng::Value;

fn root() -> PathBuf {
    common::repo_root()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn files_with_ext(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files_with_ext(&p, exts));
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The `env:VAR` names a job file uses.
fn env_refs(job_file: &str) -> BTreeSet<String> {
    job_file
        .split("\"env:")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// Loads a job file with each `env:VAR` replaced by its value from `vars` (as the process
/// environment would provide it), failing when a variable is not provided.
fn load_with_env(text: &str, vars: &BTreeMap<String, String>, label: &str) -> JobConfig {
    JobConfig::parse(&resolve_env(text, &filled_in(vars), label), Path::new(label))
        .unwrap_or_else(|e| panic!("{label} does not load: {e}"))
}

/// The shipped secrets as an operator fills them in: every `CHANGE-ME` placeholder replaced.
fn filled_in(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.clone(), if v.contains("CHANGE-ME") { "operator-chosen-secret-0123456789abcdef".into() } else { v.clone() }))
        .collect()
}

/// The shipped placeholder control token is refused: a deployment that forgot to replace it
/// does not start.
fn assert_placeholder_refused(text: &str, vars: &BTreeMap<String, String>, label: &str) {
    let e = JobConfig::parse(&resolve_env(text, vars, label), Path::new(label))
        .err()
        .unwrap_or_else(|| panic!("{label} loads with the shipped CHANGE-ME control token"))
        .to_string();
    assert!(e.contains("control.token") && e.contains("placeholder"), "{label}: {e}");
}

fn resolve_env(text: &str, vars: &BTreeMap<String, String>, label: &str) -> String {
    let mut resolved = text.to_string();
    for var in env_refs(text) {
        let value = vars.get(&var).unwrap_or_else(|| {
            panic!(
                "{label} reads env:{var}, which its secrets ({:?}) do not define",
                vars.keys()
            )
        });
        resolved = resolved.replace(&format!("\"env:{var}\""), &format!("{value:?}"));
    }
    resolved
}

/// `KEY=VALUE` lines of an env file.
fn env_file(path: &Path) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

// --- YAML ------------------------------------------------------------------------------------

#[test]
fn every_yaml_file_parses() {
    let mut files = files_with_ext(&root().join("deploy"), &["yaml", "yml"]);
    files.extend(files_with_ext(&root().join("dashboards"), &["yaml", "yml"]));
    assert!(
        files.len() >= 8,
        "expected the manifests and rules, found {files:?}"
    );
    for f in &files {
        let docs = yaml_docs(f);
        assert!(!docs.is_empty(), "{} has no YAML document", f.display());
        eprintln!(
            "{}: {} document(s)",
            f.strip_prefix(root()).unwrap().display(),
            docs.len()
        );
    }
}

// --- Kubernetes ------------------------------------------------------------------------------

struct Manifests {
    by_kind: BTreeMap<String, Vec<Value>>,
}

impl Manifests {
    fn load() -> Manifests {
        let dir = root().join("deploy/k8s");
        let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for f in files_with_ext(&dir, &["yaml"]) {
            for doc in yaml_docs(&f) {
                let kind = str_of(&doc["kind"]).to_string();
                assert!(!kind.is_empty(), "{}: a document without kind", f.display());
                by_kind.entry(kind).or_default().push(doc);
            }
        }
        Manifests { by_kind }
    }

    fn one(&self, kind: &str) -> &Value {
        match self.by_kind.get(kind).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!(
                "deploy/k8s: expected exactly one {kind}, found {}",
                other.map_or(0, <[Value]>::len)
            ),
        }
    }
}

#[test]
fn kubernetes_manifests_fit_together() {
    let m = Manifests::load();
    let sts = m.one("StatefulSet");
    let svc = m.one("Service");
    let mon = m.one("ServiceMonitor");
    let cm = m.one("ConfigMap");
    let secret = m.one("Secret");
    let pod = s(sts, &["spec", "template", "spec"]);
    let containers = pod["containers"]
        .as_sequence()
        .expect("StatefulSet containers");
    assert_eq!(containers.len(), 1, "one ferry container per pod");
    let c = &containers[0];

    // Secrets: every env: value of every job file comes from the Secret, via envFrom.
    let secret_vars: BTreeMap<String, String> = secret["stringData"]
        .as_mapping()
        .expect("Secret stringData")
        .iter()
        .map(|(k, v)| (str_of(k).to_string(), str_of(v).to_string()))
        .collect();
    let env_from: Vec<&str> = c["envFrom"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| str_of(&e["secretRef"]["name"]))
        .collect();
    assert!(
        env_from.contains(&str_of(&secret["metadata"]["name"])),
        "the container must take the Secret's keys as environment (envFrom), has {env_from:?}"
    );

    // One job file per replica: ferry-N.toml for N in 0..replicas, each loading cleanly.
    let replicas = sts["spec"]["replicas"]
        .as_u64()
        .expect("StatefulSet replicas");
    let sts_name = str_of(&sts["metadata"]["name"]);
    let files: BTreeMap<String, String> = cm["data"]
        .as_mapping()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| (str_of(k).to_string(), str_of(v).to_string()))
        .collect();
    let expected: BTreeSet<String> = (0..replicas)
        .map(|i| format!("{sts_name}-{i}.toml"))
        .collect();
    assert_eq!(
        files.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the ConfigMap needs exactly one job file per StatefulSet replica"
    );
    for (name, text) in &files {
        assert_placeholder_refused(text, &secret_vars, &format!("ConfigMap {name}"));
    }
    let jobs: Vec<JobConfig> = files
        .iter()
        .map(|(name, text)| load_with_env(text, &secret_vars, &format!("ConfigMap {name}")))
        .collect();
    let names: BTreeSet<&str> = jobs.iter().map(|j| j.job.name.as_str()).collect();
    assert_eq!(
        names.len(),
        jobs.len(),
        "every instance needs its own job name (it labels the metrics)"
    );
    // Instances split by collection move disjoint collections; instances split by channel
    // move the same collection from disjoint channels (the example shows both).
    let mut by_collection: BTreeMap<String, Vec<Option<Vec<u32>>>> = BTreeMap::new();
    for j in &jobs {
        let channels = j.source.wal.as_ref().and_then(|w| w.channels.clone());
        for c in &j.collections {
            by_collection.entry(c.source.clone()).or_default().push(channels.clone());
        }
    }
    let mut split_by_channel = 0;
    for (collection, shares) in &by_collection {
        if shares.len() == 1 {
            continue;
        }
        let mut seen = BTreeSet::new();
        for s in shares {
            let s = s.as_ref().unwrap_or_else(|| {
                panic!("{collection} is moved by several instances, one of them without [source.wal] channels")
            });
            assert!(
                s.iter().all(|n| seen.insert(*n)),
                "{collection}: two instances read the same channel ({shares:?})"
            );
        }
        split_by_channel += 1;
    }
    assert!(split_by_channel > 0, "the ConfigMap shows no split by channel");

    // The pod picks its file by name, from the mounted ConfigMap.
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("container args")
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(
        args.first(),
        Some(&"run"),
        "the container runs the daemon: {args:?}"
    );
    let config_arg = args
        .iter()
        .skip_while(|a| **a != "--config")
        .nth(1)
        .expect("--config in args");
    assert_eq!(*config_arg, "/etc/ferry/$(POD_NAME).toml");
    let pod_name = c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "POD_NAME")
        .expect("POD_NAME env");
    assert_eq!(
        str_of(&pod_name["valueFrom"]["fieldRef"]["fieldPath"]),
        "metadata.name"
    );
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|v| (str_of(&v["name"]), str_of(&v["mountPath"])))
        .collect();
    let cm_volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == cm["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    assert_eq!(
        mounts.get(str_of(&cm_volume["name"])),
        Some(&"/etc/ferry"),
        "the job files are mounted at /etc/ferry"
    );

    // Each pod's state_dir is on its own persistent volume.
    let claims: Vec<&str> = sts["spec"]["volumeClaimTemplates"]
        .as_sequence()
        .expect("volumeClaimTemplates")
        .iter()
        .map(|v| str_of(&v["metadata"]["name"]))
        .collect();
    assert_eq!(claims.len(), 1, "one volume claim template (the state)");
    let state_mount = Path::new(mounts.get(claims[0]).expect("the claim is mounted"));
    for j in &jobs {
        assert!(
            j.job.state_dir.starts_with(state_mount),
            "job {}: state_dir {} is not on the persistent volume ({})",
            j.job.name,
            j.job.state_dir.display(),
            state_mount.display()
        );
    }

    // Ports: the job files listen where the container, the Service and the probes look.
    let ports: BTreeMap<&str, u64> = c["ports"]
        .as_sequence()
        .expect("container ports")
        .iter()
        .map(|p| (str_of(&p["name"]), p["containerPort"].as_u64().unwrap_or(0)))
        .collect();
    for j in &jobs {
        for (name, listen) in [
            ("metrics", &j.telemetry.listen),
            ("control", &j.control.listen),
        ] {
            let addr: std::net::SocketAddr = listen.parse().unwrap();
            assert!(
                addr.ip().is_unspecified(),
                "job {}: {name} must listen on 0.0.0.0 in a pod, not {listen}",
                j.job.name
            );
            assert_eq!(
                Some(&(addr.port() as u64)),
                ports.get(name),
                "job {}: {name} port",
                j.job.name
            );
        }
        assert!(
            j.control.token.is_some(),
            "job {}: the control API on the pod IP needs a token",
            j.job.name
        );
    }
    assert_eq!(ports.get("control"), Some(&7070));
    assert_eq!(ports.get("metrics"), Some(&9464));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(str_of(&c[probe]["httpGet"]["path"]), path, "{probe}");
        assert_eq!(str_of(&c[probe]["httpGet"]["port"]), "metrics", "{probe}");
    }

    // SIGTERM drain fits in the grace period.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let drain = jobs.iter().map(|j| j.job.shutdown_timeout_s).max().unwrap();
    assert!(
        grace >= drain + 30,
        "terminationGracePeriodSeconds {grace} leaves too little over shutdown_timeout_s {drain}"
    );
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true),
        "pods run as non-root"
    );

    // Service and ServiceMonitor find the pods, and the scrape keeps ferry's `job` label.
    let pod_labels = s(sts, &["spec", "template", "metadata", "labels"]);
    assert_eq!(
        str_of(&sts["spec"]["serviceName"]),
        str_of(&svc["metadata"]["name"])
    );
    for (k, v) in svc["spec"]["selector"]
        .as_mapping()
        .expect("Service selector")
    {
        assert_eq!(
            &pod_labels[str_of(k)],
            v,
            "Service selector {k:?} does not match the pods"
        );
    }
    let svc_ports: BTreeSet<&str> = svc["spec"]["ports"]
        .as_sequence()
        .expect("Service ports")
        .iter()
        .map(|p| str_of(&p["name"]))
        .collect();
    assert!(
        svc_ports.contains("metrics") && svc_ports.contains("control"),
        "Service ports {svc_ports:?}"
    );
    for (k, v) in mon["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("ServiceMonitor selector")
    {
        assert_eq!(
            &svc["metadata"]["labels"][str_of(k)],
            v,
            "ServiceMonitor selector {k:?} does not match the Service"
        );
    }
    let endpoints = mon["spec"]["endpoints"]
        .as_sequence()
        .expect("ServiceMonitor endpoints");
    assert!(
        endpoints
            .iter()
            .any(|e| e["port"] == "metrics" && e["honorLabels"].as_bool() == Some(true)),
        "the ServiceMonitor must scrape port metrics with honorLabels: true"
    );

    // kustomization.yaml lists exactly the manifests.
    let kust = &yaml_docs(&root().join("deploy/k8s/kustomization.yaml"))[0];
    let listed: BTreeSet<String> = kust["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| str_of(r).to_string())
        .collect();
    let present: BTreeSet<String> = files_with_ext(&root().join("deploy/k8s"), &["yaml"])
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "deploy/k8s/kustomization.yaml resources");
}

#[test]
fn kustomize_builds_the_manifests() {
    let Ok(out) = Command::new("kubectl")
        .args(["kustomize", "deploy/k8s"])
        .current_dir(root())
        .output()
    else {
        eprintln!("NOTE: kubectl not found; `kubectl kustomize deploy/k8s` not checked");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/k8s failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    for k in [
        "Namespace",
        "Secret",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(k), "kustomize output lacks {k}: {kinds:?}");
    }
}

// --- the example job file ----------------------------------------------------------------

fn example() -> (String, BTreeMap<String, String>) {
    (
        read(&root().join("deploy/ferry.example.toml")),
        env_file(&root().join("deploy/systemd/ferry.env.example")),
    )
}

#[test]
fn example_job_file_loads_and_names_every_documented_key() {
    let (text, vars) = example();
    assert_placeholder_refused(&text, &vars, "deploy/ferry.example.toml");
    let cfg = load_with_env(&text, &vars, "deploy/ferry.example.toml");
    assert!(
        cfg.source.wal.is_some(),
        "the example is a zero-downtime job: it needs [source.wal]"
    );
    assert!(!cfg.collections.is_empty());

    // Every key of the README's job file reference appears (set or commented out) in its table
    // (a table commented out as a whole counts too).
    let readme = read(&root().join("README.md"));
    let keys: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|k| k.contains('.') && !k.contains('*') && !k.contains(' ') && !k.contains('/'))
        .collect();
    assert!(
        keys.len() >= 15,
        "README job file reference not found (keys: {keys:?})"
    );
    let mut sections: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        // A table header, or one commented out with its keys (an optional table).
        let header = t.trim_start_matches('#').trim_start();
        if header.starts_with('[') && header.ends_with(']') {
            current = header.trim_matches(|c| c == '[' || c == ']').to_string();
        } else {
            sections
                .entry(current.clone())
                .or_default()
                .push_str(&format!("{}\n", t.trim_start_matches('#').trim()));
        }
    }
    let mut missing = Vec::new();
    for key in keys {
        let (table, name) = key.rsplit_once('.').unwrap();
        let body = sections.get(table).map(String::as_str).unwrap_or("");
        if !body
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == name))
        {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "deploy/ferry.example.toml lacks README keys: {missing:?}"
    );
}

/// The binary takes the example as shipped, with only addresses, names and the state
/// directory pointed at the test environment.
#[tokio::test]
async fn binary_accepts_the_example_job_file_in_dry_run() {
    let env = common::env();
    let source = common::client(&env.source_uri).await;
    let src = common::unique("deploy_example");
    common::stream::make_source(&source, &src, 100).await;
    let dir = tempfile::tempdir().unwrap();

    let (text, vars) = example();
    let mut job = text.clone();
    for (from, to) in [
        (
            "http://milvus-source.example.internal:19530".to_string(),
            env.source_uri.clone(),
        ),
        (
            "https://in01-0123456789abcdef.cloud.example.com:19530".to_string(),
            env.target_uri.clone(),
        ),
        (
            "kafka-0.example.internal:9092,kafka-1.example.internal:9092".to_string(),
            env.kafka_brokers.clone(),
        ),
        (
            "source = \"products\"".to_string(),
            format!("source = \"{src}\""),
        ),
        (
            "target = \"products_v2\"".to_string(),
            format!("target = \"{src}_v2\""),
        ),
        (
            "[[collections]]\nsource = \"users\"\n".to_string(),
            String::new(),
        ),
        (
            "/var/lib/ferry/state".to_string(),
            dir.path().join("state").display().to_string(),
        ),
        ("127.0.0.1:7070".to_string(), "127.0.0.1:0".to_string()),
        ("127.0.0.1:9464".to_string(), "127.0.0.1:0".to_string()),
    ] {
        assert!(
            job.contains(&from),
            "deploy/ferry.example.toml no longer contains {from:?}: update this test"
        );
        job = job.replace(&from, &to);
    }
    let path = dir.path().join("job.toml");
    std::fs::write(&path, &job).unwrap();
    let vars = filled_in(&vars);
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // `ferry run` is what the image, the units and the StatefulSet start; `migrate` shares
    // the job file.
    let outs: Vec<_> = ["run", "migrate"]
        .into_iter()
        .map(|cmd| (cmd, common::run_ferry(&[cmd, "--config", path.to_str().unwrap(), "--dry-run"], &envs)))
        .collect();
    // Without [source.wal], `ferry run` refuses the file even in a dry run.
    let no_wal = dir.path().join("no_wal.toml");
    let cut = job.find("[source.wal]").expect("the example has [source.wal]");
    let rest = &job[cut..];
    let next = rest[1..].find("\n[").map_or(rest.len(), |i| i + 1);
    std::fs::write(&no_wal, format!("{}{}", &job[..cut], &rest[next..])).unwrap();
    let refused = common::run_ferry(&["run", "--config", no_wal.to_str().unwrap(), "--dry-run"], &envs);
    let _ = source.drop_collection(&src).await;
    for (cmd, out) in outs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ferry {cmd} --dry-run rejected the example job file:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{src}_v2")),
            "ferry {cmd} --dry-run: the plan names the target collection:\n{stdout}"
        );
    }
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("[source.wal]"),
        "ferry run --dry-run without [source.wal] must fail naming it:\n{stderr}"
    );
}

// --- systemd -----------------------------------------------------------------------------------

#[test]
fn systemd_units_verify_and_match_the_example() {
    let dir = root().join("deploy/systemd");
    let units = files_with_ext(&dir, &["service"]);
    assert!(
        units.len() >= 2,
        "expected ferry.service and ferry@.service, found {units:?}"
    );
    let (example, _) = example();
    let vars = env_file(&dir.join("ferry.env.example"));
    for var in env_refs(&example) {
        assert!(
            vars.contains_key(&var),
            "ferry.env.example lacks {var}, which deploy/ferry.example.toml reads"
        );
    }
    let drain = load_with_env(&example, &vars, "deploy/ferry.example.toml")
        .job
        .shutdown_timeout_s;

    let have_analyze = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_analyze {
        eprintln!("NOTE: systemd-analyze not found; unit files checked by hand only");
    }
    let tmp = tempfile::tempdir().unwrap();
    for unit in units {
        let text = read(&unit);
        let file = unit.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            text.contains("ExecStart=/usr/local/bin/ferry run --config "),
            "{file}: ExecStart runs the daemon"
        );
        assert!(
            text.contains("KillSignal=SIGTERM"),
            "{file}: SIGTERM stops ferry cleanly"
        );
        let stop: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{file}: TimeoutStopSec in seconds"));
        assert!(
            stop >= drain + 30,
            "{file}: TimeoutStopSec={stop} leaves too little over shutdown_timeout_s {drain}"
        );
        assert!(
            text.contains("StateDirectory=ferry"),
            "{file}: state under /var/lib/ferry"
        );
        if !have_analyze {
            continue;
        }
        // Verify a copy that runs the binary just built (verify checks ExecStart exists).
        let name = if file.contains("@.") {
            file.replace("@.", "@example.")
        } else {
            file.clone()
        };
        let copy = tmp.path().join(&name);
        std::fs::write(
            &copy,
            text.replace("/usr/local/bin/ferry", env!("CARGO_BIN_EXE_ferry")),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("run systemd-analyze");
        let err = String::from_utf8_lossy(&out.stderr);
        // Unknown keys and bad values are only warnings (exit 0): any line about the unit fails.
        let about_unit: Vec<&str> = err.lines().filter(|l| l.contains(&name)).collect();
        assert!(
            out.status.success() && about_unit.is_empty(),
            "systemd-analyze verify {file}:\n{err}"
        );
    }
}

// --- Dockerfile ------------------------------------------------------------------------------

#[test]
fn dockerfile_copies_files_that_exist_and_runs_unprivileged() {
    let text = read(&root().join("deploy/Dockerfile"));
    let ignore = read(&root().join("deploy/Dockerfile.dockerignore"));
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut copies = 0;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "Dockerfile copies {src}, which does not exist"
            );
            assert!(
                allowed.contains(&src.trim_end_matches('/')),
                "Dockerfile.dockerignore leaves out {src}"
            );
            copies += 1;
        }
    }
    assert!(
        copies >= 4,
        "expected the sources to be copied ({copies} found)"
    );
    assert!(
        text.contains("cargo build --release --locked --bin ferry"),
        "the builder builds the ferry binary"
    );
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage build ({stages} stages)");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
    let expose: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(
        expose.contains("7070") && expose.contains("9464"),
        "EXPOSE {expose:?}"
    );
    assert!(
        text.contains("VOLUME [\"/var/lib/ferry\"]"),
        "a volume for state_dir"
    );
}

#[test]
fn dockerfile_runtime_installs_the_rocksdb_library() {
    let text = read(&root().join("deploy/Dockerfile"));
    // The runtime stage: from the last FROM on.
    let start = text
        .match_indices("\nFROM ")
        .last()
        .map(|(i, _)| i + 1)
        .expect("a FROM line");
    let runtime = &text[start..];
    let base = runtime.lines().next().unwrap();
    // The package name is Debian bookworm's; another base would need another name.
    assert!(
        base.starts_with("FROM debian:bookworm"),
        "the runtime base is {base:?}: librocksdb7.8 is bookworm's package"
    );
    // One RUN instruction, continuation lines joined.
    let joined = runtime.replace("\\\n", " ");
    let installs = joined
        .lines()
        .filter(|l| l.starts_with("RUN ") && l.contains("apt-get install"))
        .flat_map(|l| l.split("&&"))
        .filter(|cmd| cmd.contains("apt-get install"))
        .flat_map(str::split_whitespace)
        .any(|w| w == "librocksdb7.8");
    assert!(
        installs,
        "the runtime stage must apt-get install librocksdb7.8 (a [source.wal] rocksmq job loads it)"
    );
}

// --- RocksMQ: ferry beside a standalone Milvus ---------------------------------------------------

/// One volume of a compose service, from `source:target[:mode]` or the long syntax.
#[derive(Debug)]
struct ComposeMount {
    source: String,
    target: String,
    read_only: bool,
}

fn compose_mounts(service: &Value, name: &str) -> Vec<ComposeMount> {
    service["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| match v {
            Value::String(spec) => {
                let parts: Vec<&str> = spec.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [s, t] => (*s, *t, ""),
                    [s, t, m] => (*s, *t, *m),
                    _ => panic!(
                        "compose service {name}: volume {spec:?} is not source:target[:mode]"
                    ),
                };
                ComposeMount {
                    source: source.to_string(),
                    target: target.to_string(),
                    read_only: mode.split(',').any(|m| m == "ro"),
                }
            }
            long => ComposeMount {
                source: str_of(&long["source"]).to_string(),
                target: str_of(&long["target"]).to_string(),
                read_only: long["read_only"].as_bool() == Some(true),
            },
        })
        .collect()
}

/// A command or args: a YAML list, or a string split on whitespace.
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => v
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|w| str_of(w).to_string())
            .collect(),
    }
}

/// The `--config` argument of a `ferry run` command line.
fn config_arg(args: &[String], label: &str) -> String {
    assert_eq!(
        args.first().map(String::as_str),
        Some("run"),
        "{label}: the container runs the daemon: {args:?}"
    );
    args.iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .unwrap_or_else(|| panic!("{label}: --config in {args:?}"))
        .clone()
}

/// `http://host:port` -> (host, port).
fn host_port(uri: &str) -> (String, u16) {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{uri}: no port"));
    (
        host.to_string(),
        port.parse().unwrap_or_else(|_| panic!("{uri}: bad port")),
    )
}

/// A compose duration (`90s`, `1m30s`, `2m`) in seconds.
fn compose_duration_s(text: &str) -> u64 {
    let (mut total, mut n) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            n.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("duration {text:?}: unit {c:?}"),
        };
        total += n
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("duration {text:?}"))
            * unit;
        n.clear();
    }
    assert!(n.is_empty(), "duration {text:?} ends without a unit");
    total
}

/// Job file lines that set a secret must read it from the environment, not hold it.
fn assert_secrets_from_env(text: &str, label: &str) {
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key == "token" || key.ends_with("password") {
            assert!(
                value.trim().starts_with("\"env:"),
                "{label}: {key} must be an env:VAR reference, not a value: {line}"
            );
        }
    }
}

/// What both RocksMQ examples hold for their job: the WAL is the standalone's RocksMQ as
/// mounted in ferry's container, never Kafka; state elsewhere; the APIs on the container's
/// addresses with a token.
fn check_rocksmq_job(job: &JobConfig, label: &str, milvus_mount: &Path) {
    let wal = job
        .source
        .wal
        .as_ref()
        .unwrap_or_else(|| panic!("{label}: a zero-downtime job needs [source.wal]"));
    assert_eq!(
        wal.rocksmq.as_deref(),
        Some(milvus_mount.join("rdb_data").as_path()),
        "{label}: [source.wal] rocksmq must be the standalone's rocksmq.path as ferry's container \
         sees it: the Milvus data mount ({}) plus rdb_data",
        milvus_mount.display()
    );
    assert!(
        wal.brokers.trim().is_empty(),
        "{label}: brokers and rocksmq exclude each other"
    );
    assert!(
        !job.job.state_dir.starts_with(milvus_mount),
        "{label}: state_dir {} is inside Milvus's directory",
        job.job.state_dir.display()
    );
    for (name, listen) in [
        ("telemetry", &job.telemetry.listen),
        ("control", &job.control.listen),
    ] {
        let addr: std::net::SocketAddr = listen
            .parse()
            .unwrap_or_else(|e| panic!("{label}: {name} listen {listen}: {e}"));
        assert!(
            addr.ip().is_unspecified(),
            "{label}: {name} must listen on 0.0.0.0 in a container, not {listen}"
        );
    }
    // (From the environment: assert_secrets_from_env checks every token line.)
    assert!(
        job.control.token.is_some(),
        "{label}: the control API off loopback needs a token"
    );
}

#[test]
fn rocksmq_compose_shares_the_standalones_volume_read_only() {
    let dir = root().join("deploy/rocksmq");
    let path = dir.join("docker-compose.yml");
    let label = "deploy/rocksmq/docker-compose.yml";
    let docs = yaml_docs(&path);
    assert_eq!(docs.len(), 1, "{label}: one document");
    let compose = &docs[0];
    let services = compose["services"].as_mapping().expect("services");
    for name in ["etcd", "minio", "standalone", "ferry"] {
        assert!(services.contains_key(name), "{label}: no service {name}");
    }
    let named_volumes = compose["volumes"].as_mapping().cloned().unwrap_or_default();
    let is_named = |source: &str| !source.starts_with(['.', '/', '~', '$']);
    let standalone = &compose["services"]["standalone"];
    let ferry = &compose["services"]["ferry"];

    // Milvus 2.3 standalone, as Milvus's compose runs it.
    let image = str_of(&standalone["image"]);
    assert!(
        image.starts_with("milvusdb/milvus:v2.3."),
        "{label}: standalone image {image}"
    );
    assert_eq!(
        words(&standalone["command"]),
        ["milvus", "run", "standalone"]
    );
    let milvus = compose_mounts(standalone, "standalone")
        .into_iter()
        .find(|m| m.target == "/var/lib/milvus")
        .unwrap_or_else(|| panic!("{label}: the standalone mounts nothing at /var/lib/milvus"));
    assert!(!milvus.read_only, "{label}: Milvus writes its data");
    if is_named(&milvus.source) {
        assert!(
            named_volumes.contains_key(milvus.source.as_str()),
            "{label}: volume {} is not declared",
            milvus.source
        );
    }

    // ferry mounts that very volume, read-only, and only read-only.
    let mounts = compose_mounts(ferry, "ferry");
    let shared: Vec<&ComposeMount> = mounts
        .iter()
        .filter(|m| m.source == milvus.source)
        .collect();
    assert_eq!(
        shared.len(),
        1,
        "{label}: ferry must mount the standalone's {} once: {mounts:?}",
        milvus.source
    );
    assert!(
        shared[0].read_only,
        "{label}: ferry mounts Milvus's data without :ro"
    );
    let data_mount = Path::new(&shared[0].target);

    // The job file: the --config of the command, this folder's ferry.toml, read-only.
    let config = config_arg(&words(&ferry["command"]), label);
    let job_mount = mounts
        .iter()
        .find(|m| m.target == config)
        .unwrap_or_else(|| panic!("{label}: nothing mounted at --config {config}"));
    assert!(
        job_mount.read_only,
        "{label}: the job file is mounted without :ro"
    );
    let job_path = dir.join(&job_mount.source);
    assert_eq!(
        job_path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", job_path.display())),
        dir.join("ferry.toml").canonicalize().unwrap(),
        "{label}: ferry runs deploy/rocksmq/ferry.toml"
    );
    let text = read(&job_path);
    let job_label = "deploy/rocksmq/ferry.toml";
    assert_secrets_from_env(&text, job_label);

    // Secrets: every env: the job reads is passed from the host's environment (interpolated,
    // never written in the compose file).
    let env: BTreeMap<String, String> = match &ferry["environment"] {
        Value::Sequence(list) => list
            .iter()
            .map(|e| {
                let e = str_of(e);
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        other => other
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| (str_of(k).to_string(), str_of(v).to_string()))
            .collect(),
    };
    for var in env_refs(&text) {
        let value = env.get(&var).unwrap_or_else(|| {
            panic!("{label}: ferry's environment lacks {var}, which {job_label} reads")
        });
        assert!(
            value.starts_with("${"),
            "{label}: {var} must come from the host's environment (${{{var}...}}), not be written here"
        );
    }
    let vars: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if v.starts_with("${") {
                    "CHANGE-ME".to_string()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let job = load_with_env(&text, &vars, job_label);
    check_rocksmq_job(&job, job_label, data_mount);

    // The source is the standalone, by its service name.
    let (host, port) = host_port(&job.source.uri);
    assert_eq!(
        host, "standalone",
        "{job_label}: source.uri {}",
        job.source.uri
    );
    assert_eq!(port, 19530, "{job_label}: source.uri {}", job.source.uri);

    // State on ferry's own named, writable volume.
    let state = mounts
        .iter()
        .filter(|m| job.job.state_dir.starts_with(&m.target))
        .max_by_key(|m| m.target.len())
        .unwrap_or_else(|| {
            panic!(
                "{label}: state_dir {} is on no volume",
                job.job.state_dir.display()
            )
        });
    assert_ne!(
        state.source, milvus.source,
        "{label}: ferry's state on Milvus's volume"
    );
    assert!(!state.read_only, "{label}: the state volume is read-only");
    assert!(
        is_named(&state.source) && named_volumes.contains_key(state.source.as_str()),
        "{label}: state_dir must be on a declared named volume, is on {}",
        state.source
    );

    // The control API's TLS files come from a read-only mount.
    for file in [&job.control.tls_cert, &job.control.tls_key] {
        let file = file
            .as_ref()
            .expect("control TLS: the listener is not loopback");
        assert!(
            mounts
                .iter()
                .any(|m| m.read_only && file.starts_with(&m.target)),
            "{label}: {} is on no read-only mount",
            file.display()
        );
    }

    // Ports: what the job listens on is published.
    let published: BTreeSet<u16> = ferry["ports"]
        .as_sequence()
        .expect("ferry ports")
        .iter()
        .map(|p| {
            let p = str_of(p);
            let container = p.rsplit(':').next().unwrap().split('/').next().unwrap();
            container
                .parse()
                .unwrap_or_else(|_| panic!("{label}: port {p}"))
        })
        .collect();
    for listen in [&job.telemetry.listen, &job.control.listen] {
        let port = listen.parse::<std::net::SocketAddr>().unwrap().port();
        assert!(
            published.contains(&port),
            "{label}: port {port} is not published ({published:?})"
        );
    }
    assert_eq!(
        published,
        BTreeSet::from([7070, 9464]),
        "{label}: ferry's ports"
    );

    // Lifecycle: after the standalone, restarted, with time to drain on SIGTERM.
    let depends: Vec<String> = match &ferry["depends_on"] {
        Value::Mapping(m) => m.keys().map(|k| str_of(k).to_string()).collect(),
        other => words(other),
    };
    assert!(
        depends.iter().any(|d| d == "standalone"),
        "{label}: ferry depends_on {depends:?}"
    );
    let restart = str_of(&ferry["restart"]);
    assert!(
        ["always", "unless-stopped", "on-failure"].contains(&restart),
        "{label}: ferry restart policy {restart:?}"
    );
    let grace = compose_duration_s(str_of(&ferry["stop_grace_period"]));
    assert!(
        grace >= job.job.shutdown_timeout_s + 30,
        "{label}: stop_grace_period {grace}s leaves too little over shutdown_timeout_s {}",
        job.job.shutdown_timeout_s
    );
    let user = str_of(&ferry["user"]);
    assert!(
        user.is_empty() || !(user.starts_with('0') || user.starts_with("root")),
        "{label}: ferry runs as {user}"
    );
}

#[test]
fn rocksmq_sidecar_shares_the_milvus_volume_read_only() {
    let label = "deploy/rocksmq/k8s-sidecar.yaml";
    let docs = yaml_docs(&root().join(label));
    let named = |kind: &str, name: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{label}: no {kind} {name}"))
    };
    let workloads: Vec<&Value> = docs
        .iter()
        .filter(|d| matches!(str_of(&d["kind"]), "Deployment" | "StatefulSet"))
        .collect();
    assert_eq!(
        workloads.len(),
        1,
        "{label}: one workload, the standalone's pod"
    );
    let workload = workloads[0];
    let pod = s(workload, &["spec", "template", "spec"]);
    let containers = pod["containers"].as_sequence().expect("containers");
    let milvus = containers
        .iter()
        .find(|c| str_of(&c["image"]).starts_with("milvusdb/milvus:v2.3."))
        .unwrap_or_else(|| panic!("{label}: no Milvus 2.3 container"));
    let mut milvus_cmd = words(&milvus["command"]);
    milvus_cmd.extend(words(&milvus["args"]));
    assert!(
        milvus_cmd.ends_with(&["run".into(), "standalone".into()]),
        "{label}: Milvus runs {milvus_cmd:?}"
    );
    let ferry = containers
        .iter()
        .find(|c| c["name"] == "ferry")
        .unwrap_or_else(|| panic!("{label}: no ferry container beside Milvus"));

    // (volume, mountPath, readOnly) of a container.
    let mounts = |c: &Value| -> Vec<(String, String, bool)> {
        c["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    str_of(&m["name"]).to_string(),
                    str_of(&m["mountPath"]).to_string(),
                    m["readOnly"].as_bool() == Some(true),
                )
            })
            .collect()
    };
    let volume = |name: &str| -> &Value {
        pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{label}: no pod volume {name}"))
    };
    // The claim behind a volume (a pod volume, or a StatefulSet's volumeClaimTemplate).
    let claim = |name: &str| -> Option<String> {
        let template = workload["spec"]["volumeClaimTemplates"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|t| t["metadata"]["name"] == name);
        if template {
            return Some(format!("template {name}"));
        }
        let v = volume(name);
        let claim = str_of(&v["persistentVolumeClaim"]["claimName"]);
        if claim.is_empty() {
            return None;
        }
        named("PersistentVolumeClaim", claim);
        Some(claim.to_string())
    };

    // Milvus's data, and ferry on the same volume, read-only.
    let (milvus_volume, milvus_path, milvus_ro) = mounts(milvus)
        .into_iter()
        .find(|(_, p, _)| p == "/var/lib/milvus")
        .unwrap_or_else(|| panic!("{label}: Milvus mounts nothing at /var/lib/milvus"));
    assert!(!milvus_ro, "{label}: Milvus writes its data");
    let milvus_claim = claim(&milvus_volume).unwrap_or_else(|| {
        panic!("{label}: Milvus's data ({milvus_volume}) must be a PersistentVolumeClaim")
    });
    let ferry_mounts = mounts(ferry);
    let shared: Vec<&(String, String, bool)> = ferry_mounts
        .iter()
        .filter(|(v, _, _)| *v == milvus_volume)
        .collect();
    assert_eq!(
        shared.len(),
        1,
        "{label}: ferry must mount Milvus's volume {milvus_volume} once"
    );
    assert!(
        shared[0].2,
        "{label}: ferry mounts Milvus's data without readOnly: true"
    );
    assert_eq!(
        shared[0].1, milvus_path,
        "{label}: ferry sees Milvus's data where Milvus does"
    );
    let data_mount = Path::new(&shared[0].1);

    // The job file from the ConfigMap, the credentials from the Secret.
    let config = config_arg(&words(&ferry["args"]), label);
    let config = Path::new(&config);
    let (jobs_volume, _, jobs_ro) = ferry_mounts
        .iter()
        .find(|(_, p, _)| config.parent() == Some(Path::new(p)))
        .unwrap_or_else(|| {
            panic!(
                "{label}: nothing mounted at {}",
                config.parent().unwrap().display()
            )
        });
    assert!(jobs_ro, "{label}: the job file's volume is writable");
    let cm = named(
        "ConfigMap",
        str_of(&volume(jobs_volume)["configMap"]["name"]),
    );
    let file = config.file_name().unwrap().to_str().unwrap();
    let text = str_of(&cm["data"][file]);
    assert!(!text.is_empty(), "{label}: the ConfigMap has no {file}");
    let secret_name = ferry["envFrom"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| str_of(&e["secretRef"]["name"]))
        .find(|n| !n.is_empty())
        .unwrap_or_else(|| panic!("{label}: ferry takes no Secret as environment (envFrom)"));
    let secret_vars: BTreeMap<String, String> = named("Secret", secret_name)["stringData"]
        .as_mapping()
        .expect("Secret stringData")
        .iter()
        .map(|(k, v)| (str_of(k).to_string(), str_of(v).to_string()))
        .collect();
    let job_label = format!("{label} ConfigMap {file}");
    assert_secrets_from_env(text, &job_label);
    assert_placeholder_refused(text, &secret_vars, &job_label);
    let job = load_with_env(text, &secret_vars, &job_label);
    check_rocksmq_job(&job, &job_label, data_mount);

    // The source is Milvus, in the same pod.
    let (host, port) = host_port(&job.source.uri);
    assert!(
        host == "127.0.0.1" || host == "localhost",
        "{job_label}: the sidecar reaches Milvus on the pod's loopback, not {host}"
    );
    let milvus_ports: Vec<u64> = milvus["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert!(
        milvus_ports.contains(&(port as u64)),
        "{job_label}: Milvus has no port {port}"
    );

    // State on a claim of its own: neither Milvus's volume nor an emptyDir.
    let (state_volume, _, state_ro) = ferry_mounts
        .iter()
        .filter(|(_, p, _)| job.job.state_dir.starts_with(p))
        .max_by_key(|(_, p, _)| p.len())
        .unwrap_or_else(|| {
            panic!(
                "{label}: state_dir {} is on no volume",
                job.job.state_dir.display()
            )
        });
    assert_ne!(
        *state_volume, milvus_volume,
        "{label}: ferry's state on Milvus's volume"
    );
    assert!(!state_ro, "{label}: the state volume is read-only");
    let state_claim = claim(state_volume).unwrap_or_else(|| {
        panic!("{label}: state_dir must be on a PersistentVolumeClaim (an emptyDir dies with the pod), is on {state_volume}")
    });
    assert_ne!(
        state_claim, milvus_claim,
        "{label}: ferry's state on Milvus's claim"
    );

    // The control API's TLS files come from a read-only mount.
    for f in [&job.control.tls_cert, &job.control.tls_key] {
        let f = f
            .as_ref()
            .expect("control TLS: the listener is not loopback");
        assert!(
            ferry_mounts
                .iter()
                .any(|(_, p, ro)| *ro && f.starts_with(p)),
            "{label}: {} is on no read-only mount",
            f.display()
        );
    }

    // Ports and probes.
    let ports: BTreeMap<String, u64> = ferry["ports"]
        .as_sequence()
        .expect("ferry ports")
        .iter()
        .map(|p| {
            (
                str_of(&p["name"]).to_string(),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for (name, listen) in [
        ("metrics", &job.telemetry.listen),
        ("control", &job.control.listen),
    ] {
        let port = listen.parse::<std::net::SocketAddr>().unwrap().port() as u64;
        assert_eq!(ports.get(name), Some(&port), "{job_label}: {name} port");
    }
    assert_eq!(ports.get("metrics"), Some(&9464));
    assert_eq!(ports.get("control"), Some(&7070));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &ferry[probe]["httpGet"];
        assert_eq!(str_of(&get["path"]), path, "{label}: ferry {probe}");
        let port = get["port"]
            .as_u64()
            .or_else(|| ports.get(str_of(&get["port"])).copied());
        assert_eq!(port, Some(9464), "{label}: ferry {probe} port");
    }

    // ferry runs as uid 10001, non-root; no pod-level fsGroup (it would change the ownership
    // of every file on Milvus's volume).
    let effective = |key: &str| -> &Value {
        let c = &ferry["securityContext"][key];
        if c.is_null() {
            &pod["securityContext"][key]
        } else {
            c
        }
    };
    assert_eq!(
        effective("runAsUser").as_u64(),
        Some(10001),
        "{label}: ferry's uid"
    );
    assert_eq!(
        effective("runAsNonRoot").as_bool(),
        Some(true),
        "{label}: ferry runs as non-root"
    );
    assert!(
        pod["securityContext"]["fsGroup"].is_null(),
        "{label}: a pod-level fsGroup would chown Milvus's volume"
    );
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace >= job.job.shutdown_timeout_s + 30,
        "{label}: terminationGracePeriodSeconds {grace} leaves too little over shutdown_timeout_s {}",
        job.job.shutdown_timeout_s
    );

    // The pod is ready only when ferry is: a Service that sends clients to Milvus must keep
    // the pod in its endpoints while ferry's /readyz fails.
    let pod_labels = s(workload, &["spec", "template", "metadata", "labels"]);
    let milvus_port_names: BTreeSet<&str> = milvus["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|p| str_of(&p["name"]))
        .collect();
    let mut milvus_services = 0;
    for svc in docs.iter().filter(|d| d["kind"] == "Service") {
        let selects_pod = svc["spec"]["selector"]
            .as_mapping()
            .is_some_and(|sel| sel.iter().all(|(k, v)| &pod_labels[str_of(k)] == v));
        let to_milvus = svc["spec"]["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|p| {
                // targetPort: a port name, a number, or (absent) the port itself.
                match &p["targetPort"] {
                    Value::String(name) => milvus_port_names.contains(name.as_str()),
                    Value::Null => p["port"]
                        .as_u64()
                        .is_some_and(|n| milvus_ports.contains(&n)),
                    n => n.as_u64().is_some_and(|n| milvus_ports.contains(&n)),
                }
            });
        if selects_pod && to_milvus {
            milvus_services += 1;
            assert_eq!(
                svc["spec"]["publishNotReadyAddresses"].as_bool(),
                Some(true),
                "{label}: Service {} would drop Milvus whenever ferry is not ready",
                str_of(&svc["metadata"]["name"])
            );
        }
    }
    assert!(
        milvus_services > 0,
        "{label}: no Service sends clients to Milvus"
    );
}
