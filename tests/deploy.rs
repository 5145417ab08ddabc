//! `deploy/` validated as far as this machine can: every YAML file under `deploy/` and
//! `dashboards/` parses; the Kubernetes manifests fit together (one job file and one volume
//! per StatefulSet replica, ports, probes, secrets, honorLabels) and `kubectl kustomize`
//! builds them; every shipped job file loads with [`JobConfig`]; the example job file names
//! every key of the README's reference and the binary accepts it (`ferry migrate --dry-run`
//! against the test environment); the systemd units pass `systemd-analyze verify`; the
//! Dockerfile copies only files that exist. (Building the image needs a Docker daemon, which
//! this machine does not have.)

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
