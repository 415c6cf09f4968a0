//! The deployment files (deploy/*.yaml, docker-compose.yml, Dockerfile) checked against the
//! code: ports, health service names, the TOKENBROKER_* variables the configuration reads, the
//! shutdown timing, and docker-compose.yml's `cluster` profile against the cluster URL form; and
//! the sidecar example (deploy/examples/sidecar-deployment.yaml) against `tokenbroker sidecar`:
//! its environment through the loader and `sidecar.*` validation, its probes against a sidecar
//! started from it, its image against the broker's.
//!
//! Why a test: these files repeat facts that live in the code (a default port, a service name,
//! a config key). Nothing else fails when one of them drifts, and a drifted manifest fails only
//! in a cluster, for example a pod that exits at start-up on an unknown variable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;
use tokenbroker_proto::v1::SERVICE_NAME;
use tokenbroker_server::config::Settings;

/// Variables outside the TOKENBROKER_ namespace that the manifests may set.
const OTHER_ENV: [&str; 2] = ["RUST_LOG", "SSL_CERT_FILE"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of a file.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// The value at a dotted path (`spec.template.spec`; numbers index sequences), or a panic
/// naming the path.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for part in path.split('.') {
        let next = match part.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(part),
        };
        cur = next.unwrap_or_else(|| panic!("missing {path} (at {part:?})"));
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn u64_at(v: &Value, path: &str) -> u64 {
    at(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number"))
}

fn seq<'a>(v: &'a Value, path: &str) -> &'a Vec<Value> {
    at(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

/// A mapping of strings (labels, ConfigMap data, environment) as a sorted map.
fn string_map(v: &Value, path: &str) -> BTreeMap<String, String> {
    at(v, path)
        .as_mapping()
        .unwrap_or_else(|| panic!("{path} is not a mapping"))
        .iter()
        .map(|(k, v)| {
            let k = k.as_str().unwrap_or_else(|| panic!("{path}: key {k:?}"));
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("{path}.{k}: not a scalar: {other:?}"),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// The kustomization and every resource of deploy/, by `Kind/name`.
struct Deploy {
    kustomization: Value,
    files: BTreeSet<String>,
    resources: BTreeMap<String, Value>,
}

impl Deploy {
    fn load() -> Self {
        let dir = repo().join("deploy");
        let mut kustomization = None;
        let mut files = BTreeSet::new();
        let mut resources = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            let docs = documents(&path);
            assert!(!docs.is_empty(), "{name} holds no document");
            if name == "kustomization.yaml" {
                kustomization = docs.into_iter().next();
                continue;
            }
            files.insert(name.clone());
            for doc in docs {
                let id = format!("{}/{}", str_at(&doc, "kind"), str_at(&doc, "metadata.name"));
                assert!(resources.insert(id.clone(), doc).is_none(), "{id} twice");
            }
        }
        Self {
            kustomization: kustomization.expect("deploy/kustomization.yaml"),
            files,
            resources,
        }
    }

    fn get(&self, id: &str) -> &Value {
        self.resources
            .get(id)
            .unwrap_or_else(|| panic!("no {id} in deploy/ (have {:?})", self.resources.keys()))
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.resources
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{kind}/")))
            .map(|(_, v)| v)
            .collect()
    }

    /// The only Deployment, and its `tokenbroker` container.
    fn broker(&self) -> (&Value, &Value) {
        let deployments = self.of_kind("Deployment");
        assert_eq!(deployments.len(), 1);
        let d = deployments[0];
        let container = seq(d, "spec.template.spec.containers")
            .iter()
            .find(|c| str_at(c, "name") == "tokenbroker")
            .expect("a container named tokenbroker");
        (d, container)
    }

    /// The environment the broker container gets, as [`Self::pod_env_as_written`], with the
    /// files it names (TLS certificates, mounted from Secrets in a cluster) replaced by test
    /// files, so that the loader, which reads them at start-up, can check the rest.
    /// [`tls_files_come_from_the_mounted_secret_and_probes_use_the_health_port`] checks the
    /// paths themselves.
    fn pod_env(&self) -> BTreeMap<String, String> {
        with_test_files(self.pod_env_as_written())
    }

    /// The environment the broker container gets, with values (Secret values from
    /// `stringData`).
    fn pod_env_as_written(&self) -> BTreeMap<String, String> {
        let (_, c) = self.broker();
        let mut env = BTreeMap::new();
        if let Some(sources) = c.get("envFrom") {
            for source in sources.as_sequence().unwrap() {
                if let Some(r) = source.get("configMapRef") {
                    let cm = self.get(&format!("ConfigMap/{}", str_at(r, "name")));
                    env.extend(string_map(cm, "data"));
                } else if let Some(r) = source.get("secretRef") {
                    let s = self.get(&format!("Secret/{}", str_at(r, "name")));
                    env.extend(string_map(s, "stringData"));
                } else {
                    panic!("unexpected envFrom source {source:?}");
                }
            }
        }
        for var in c.get("env").and_then(Value::as_sequence).unwrap_or(&vec![]) {
            let name = str_at(var, "name").to_string();
            let value = if let Some(v) = var.get("value") {
                v.as_str().unwrap().to_string()
            } else if let Some(r) = var.get("valueFrom").and_then(|f| f.get("secretKeyRef")) {
                let s = self.get(&format!("Secret/{}", str_at(r, "name")));
                str_at(s, &format!("stringData.{}", str_at(r, "key"))).to_string()
            } else if let Some(r) = var.get("valueFrom").and_then(|f| f.get("configMapKeyRef")) {
                let cm = self.get(&format!("ConfigMap/{}", str_at(r, "name")));
                str_at(cm, &format!("data.{}", str_at(r, "key"))).to_string()
            } else {
                panic!("env {name}: no value this test can resolve");
            };
            env.insert(name, value);
        }
        env
    }
}

/// `env` with the TLS file variables pointing at certificates generated for the test (kept for
/// the process's lifetime: the loader reads them when the environment is checked).
fn with_test_files(mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    static FILES: std::sync::OnceLock<(tempfile::TempDir, BTreeMap<&'static str, String>)> =
        std::sync::OnceLock::new();
    let (_, files) = FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::support::certs::TestCa::new("manifest test CA");
        let (cert, key) = ca.server().write(dir.path(), "tls");
        let ca = ca.write(dir.path(), "ca.crt");
        let files = BTreeMap::from([
            (
                "TOKENBROKER_SERVER__TLS__CERT_FILE",
                cert.display().to_string(),
            ),
            (
                "TOKENBROKER_SERVER__TLS__KEY_FILE",
                key.display().to_string(),
            ),
            (
                "TOKENBROKER_SERVER__TLS__CLIENT_CA_FILE",
                ca.display().to_string(),
            ),
            ("TOKENBROKER_SIDECAR__BROKER_CA", ca.display().to_string()),
        ]);
        (dir, files)
    });
    for (name, path) in files {
        if let Some(value) = env.get_mut(*name) {
            *value = path.clone();
        }
    }
    env
}

fn default_port(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().unwrap().port()
}

fn grpc_port() -> u16 {
    default_port(&Settings::default().listen)
}

fn metrics_port() -> u16 {
    default_port(&Settings::default().metrics.listen)
}

fn load(env: &BTreeMap<String, String>) -> Result<Settings, String> {
    Settings::load_from(None, env.clone()).map_err(|e| e.to_string())
}

/// Checks an environment as the broker would read it: all its values are valid together, and
/// every TOKENBROKER_* name is a real key. The loader refuses unknown keys, and the same
/// environment with one name misspelled is refused for an `unknown field`: so accepting the
/// name proves the configuration reads it.
fn check_environment(what: &str, env: &BTreeMap<String, String>) -> Settings {
    assert!(!env.is_empty(), "{what}: no environment");
    let settings = load(env).unwrap_or_else(|e| panic!("{what}: the environment is refused: {e}"));
    for name in env.keys() {
        if !name.starts_with("TOKENBROKER_") {
            assert!(
                OTHER_ENV.contains(&name.as_str()),
                "{what}: {name} is not a variable the broker reads"
            );
            continue;
        }
        let mut misspelled = env.clone();
        let value = misspelled.remove(name).unwrap();
        misspelled.insert(format!("{name}X"), value);
        let refused = load(&misspelled).err().unwrap_or_default();
        assert!(
            refused.contains("unknown field"),
            "{what}: {name}X was not refused as unknown ({refused:?}), so accepting {name} \
             proves nothing"
        );
    }
    settings
}

#[test]
fn kustomization_lists_every_manifest_and_the_image() {
    let deploy = Deploy::load();
    let listed: BTreeSet<String> = seq(&deploy.kustomization, "resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed, deploy.files,
        "kustomization resources vs deploy/*.yaml"
    );
    let (_, c) = deploy.broker();
    let images: Vec<&str> = seq(&deploy.kustomization, "images")
        .iter()
        .map(|i| str_at(i, "name"))
        .collect();
    assert!(
        images.contains(&str_at(c, "image")),
        "kustomization images {images:?} do not name the container image"
    );
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
        "Certificate",
        "NetworkPolicy",
    ] {
        assert!(!deploy.of_kind(kind).is_empty(), "no {kind} in deploy/");
    }
}

#[test]
fn deployment_ports_and_probes_match_the_server() {
    let deploy = Deploy::load();
    let (d, c) = deploy.broker();
    assert!(u64_at(d, "spec.replicas") >= 3);

    let ports: BTreeMap<String, u64> = seq(c, "ports")
        .iter()
        .map(|p| (str_at(p, "name").to_string(), u64_at(p, "containerPort")))
        .collect();
    assert_eq!(ports.get("grpc"), Some(&u64::from(grpc_port())));
    assert_eq!(ports.get("metrics"), Some(&u64::from(metrics_port())));

    // Native gRPC probes on the health services the server registers, on the port that serves
    // them in plaintext: the health port with TLS on, the gRPC port otherwise.
    let settings = load(&deploy.pod_env()).unwrap();
    let probe_port = if settings.server.tls.enabled() {
        default_port(&settings.server.health_listen)
    } else {
        grpc_port()
    };
    assert_eq!(u64_at(c, "livenessProbe.grpc.port"), u64::from(probe_port));
    assert_eq!(str_at(c, "livenessProbe.grpc.service"), "");
    assert_eq!(u64_at(c, "readinessProbe.grpc.port"), u64::from(probe_port));
    assert_eq!(str_at(c, "readinessProbe.grpc.service"), SERVICE_NAME);
    assert!(
        ports.values().any(|p| *p == u64::from(probe_port)),
        "the probe port {probe_port} is not a container port"
    );

    // The Prometheus annotation points at the metrics port.
    let annotations = string_map(d, "spec.template.metadata.annotations");
    assert_eq!(
        annotations
            .get("prometheus.io/port")
            .map(|p| p.parse::<u16>()),
        Some(Ok(metrics_port()))
    );
}

#[test]
fn deployment_environment_is_what_the_configuration_reads() {
    let deploy = Deploy::load();
    let env = deploy.pod_env();
    let settings = check_environment("deploy/", &env);
    // Redis comes from the Secret; the listen addresses are the container ports.
    assert!(settings.redis.primary_url.is_some());
    assert!(settings.redis.fallback_url.is_some());
    assert_eq!(default_port(&settings.listen), grpc_port());
    assert_eq!(default_port(&settings.metrics.listen), metrics_port());

    // The Redis URLs are Secret references, never plain values in the Deployment or ConfigMap.
    let (_, c) = deploy.broker();
    for var in seq(c, "env") {
        if str_at(var, "name").starts_with("TOKENBROKER_REDIS__") {
            assert!(var.get("value").is_none(), "{var:?}");
            at(var, "valueFrom.secretKeyRef");
        }
    }
    for cm in deploy.of_kind("ConfigMap") {
        assert!(
            string_map(cm, "data").keys().all(|k| !k.ends_with("_URL")),
            "a URL in a ConfigMap"
        );
    }
}

#[test]
fn service_links_are_off_because_the_loader_refuses_their_variables() {
    // Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, ... for every Service in the
    // namespace; for Services named tokenbroker* these start with TOKENBROKER_.
    let deploy = Deploy::load();
    let injected = BTreeMap::from([(
        "TOKENBROKER_SERVICE_HOST".to_string(),
        "10.0.0.1".to_string(),
    )]);
    assert!(load(&injected).is_err());
    let named_tokenbroker = deploy
        .of_kind("Service")
        .iter()
        .any(|s| str_at(s, "metadata.name").starts_with("tokenbroker"));
    if named_tokenbroker {
        let (d, _) = deploy.broker();
        assert_eq!(
            at(d, "spec.template.spec.enableServiceLinks").as_bool(),
            Some(false),
            "enableServiceLinks must be false: injected TOKENBROKER_* variables stop the broker"
        );
    }
}

#[test]
fn grace_period_covers_pre_stop_readiness_delay_and_drain() {
    let deploy = Deploy::load();
    let (d, c) = deploy.broker();
    let settings = load(&deploy.pod_env()).unwrap();
    let grace = Duration::from_secs(u64_at(
        d,
        "spec.template.spec.terminationGracePeriodSeconds",
    ));
    // The image has no shell: preStop must be the kubelet's own sleep, not an exec.
    let pre_stop = at(c, "lifecycle.preStop");
    assert!(pre_stop.get("exec").is_none(), "{pre_stop:?}");
    let pre_stop = Duration::from_secs(u64_at(pre_stop, "sleep.seconds"));
    let needed = pre_stop + settings.shutdown.readiness_delay + settings.shutdown.drain_timeout;
    assert!(
        grace > needed,
        "terminationGracePeriodSeconds {grace:?} must exceed preStop {pre_stop:?} + \
         readiness_delay {:?} + drain_timeout {:?}",
        settings.shutdown.readiness_delay,
        settings.shutdown.drain_timeout
    );
}

#[test]
fn deployment_runs_hardened_and_bounded() {
    let deploy = Deploy::load();
    let (d, c) = deploy.broker();
    let pod = at(d, "spec.template.spec");
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    assert_eq!(
        str_at(pod, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );
    assert_eq!(at(c, "securityContext.runAsNonRoot").as_bool(), Some(true));
    assert_eq!(
        at(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    assert_eq!(
        at(c, "securityContext.allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert!(
        seq(c, "securityContext.capabilities.drop")
            .iter()
            .any(|cap| cap.as_str() == Some("ALL"))
    );
    assert_eq!(
        str_at(c, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );
    // The pod's UID is the image's (numeric) USER.
    let uid = u64_at(pod, "securityContext.runAsUser");
    assert_eq!(Some(uid), dockerfile_uid());
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            at(c, &format!("resources.{kind}.{resource}"));
        }
    }
    assert!(
        !seq(pod, "topologySpreadConstraints").is_empty() || pod.get("affinity").is_some(),
        "replicas are not spread"
    );
}

/// The pod template's labels; every selector in deploy/ must be a subset of them.
fn pod_labels(deploy: &Deploy) -> BTreeMap<String, String> {
    let (d, _) = deploy.broker();
    let labels = string_map(d, "spec.template.metadata.labels");
    let selector = string_map(d, "spec.selector.matchLabels");
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    labels
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn services_pdb_and_hpa_target_the_deployment() {
    let deploy = Deploy::load();
    let labels = pod_labels(&deploy);
    let (d, c) = deploy.broker();
    let container_ports: BTreeMap<String, u64> = seq(c, "ports")
        .iter()
        .map(|p| (str_at(p, "name").to_string(), u64_at(p, "containerPort")))
        .collect();

    let services = deploy.of_kind("Service");
    let mut headless = 0;
    for s in &services {
        let name = str_at(s, "metadata.name");
        assert!(
            selects(&string_map(s, "spec.selector"), &labels),
            "Service {name} does not select the broker pods"
        );
        let mut grpc = false;
        for p in seq(s, "spec.ports") {
            let target = at(p, "targetPort");
            let target = match target.as_str() {
                Some(named) => *container_ports
                    .get(named)
                    .unwrap_or_else(|| panic!("Service {name}: no container port {named}")),
                None => target.as_u64().unwrap(),
            };
            assert!(container_ports.values().any(|p| *p == target));
            grpc |= target == u64::from(grpc_port());
        }
        assert!(grpc, "Service {name} does not expose the gRPC port");
        if s.get("spec")
            .and_then(|s| s.get("clusterIP"))
            .and_then(Value::as_str)
            == Some("None")
        {
            headless += 1;
        }
    }
    assert_eq!(
        headless, 1,
        "one headless Service for client-side balancing"
    );
    assert!(
        services.len() >= 2,
        "a ClusterIP Service and a headless one"
    );

    let pdbs = deploy.of_kind("PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1);
    assert!(selects(
        &string_map(pdbs[0], "spec.selector.matchLabels"),
        &labels
    ));
    assert!(str_at(pdbs[0], "apiVersion") == "policy/v1");

    let hpas = deploy.of_kind("HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1);
    let hpa = hpas[0];
    assert_eq!(str_at(hpa, "apiVersion"), "autoscaling/v2");
    assert_eq!(str_at(hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        str_at(hpa, "spec.scaleTargetRef.name"),
        str_at(d, "metadata.name")
    );
    assert!(u64_at(hpa, "spec.minReplicas") >= 3);
    assert!(u64_at(hpa, "spec.maxReplicas") >= u64_at(hpa, "spec.minReplicas"));
}

/// docker-compose.yml as compose reads it: one document, its merge keys (`<<: *anchor`)
/// applied.
fn compose() -> Value {
    let path = repo().join("docker-compose.yml");
    let mut docs = documents(&path);
    assert_eq!(docs.len(), 1);
    let mut compose = docs.remove(0);
    compose
        .apply_merge()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    compose
}

/// The profiles a compose service is listed in; none: it runs in every profile.
fn profiles(service: &Value) -> Vec<&str> {
    service
        .get("profiles")
        .map(|p| {
            p.as_sequence()
                .expect("profiles is a list")
                .iter()
                .map(|p| p.as_str().expect("a profile name"))
                .collect()
        })
        .unwrap_or_default()
}

/// The services `docker compose --profile <profile> up` runs (`None`: plain `up`), by name.
fn compose_services<'a>(compose: &'a Value, profile: Option<&str>) -> BTreeMap<&'a str, &'a Value> {
    at(compose, "services")
        .as_mapping()
        .expect("services is a mapping")
        .iter()
        .map(|(name, service)| (name.as_str().expect("a service name"), service))
        .filter(|(_, service)| {
            let listed = profiles(service);
            listed.is_empty() || profile.is_some_and(|p| listed.contains(&p))
        })
        .collect()
}

/// A service's `command` as its arguments.
fn command(service: &Value) -> Vec<String> {
    match service.get("command") {
        Some(Value::Sequence(args)) => args
            .iter()
            .map(|a| {
                a.as_str()
                    .expect("command arguments are strings")
                    .to_string()
            })
            .collect(),
        Some(Value::String(line)) => line.split_whitespace().map(str::to_string).collect(),
        other => panic!("no command: {other:?}"),
    }
}

/// The argument after `flag` in `args`.
fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// `host:port` of a standalone `redis://host:port` URL (no credentials, no database).
fn host_port(url: &str) -> (String, u16) {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("{url} is not a plain redis:// URL"));
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url} names no port"));
    (host.to_string(), port.parse().unwrap())
}

/// The ports a compose service publishes, as (host, container) pairs.
fn published_ports(service: &Value) -> Vec<(u16, u16)> {
    seq(service, "ports")
        .iter()
        .map(|p| {
            let p = p.as_str().expect("ports as \"host:container\" strings");
            let (host, container) = p.rsplit_once(':').expect("host:container");
            let host = host.rsplit(':').next().unwrap();
            (host.parse().unwrap(), container.parse().unwrap())
        })
        .collect()
}

/// Every string in `v`, keys excluded.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        Value::Mapping(m) => m.values().flat_map(strings).collect(),
        Value::Tagged(t) => strings(&t.value),
        _ => Vec::new(),
    }
}

#[test]
fn docker_compose_matches_the_server() {
    let compose = &compose();
    let broker = at(compose, "services.tokenbroker");
    let env = string_map(broker, "environment");
    let settings = check_environment("docker-compose.yml", &env);

    // The Redis URLs name the compose services, which have health checks.
    for (url, service) in [
        (&settings.redis.primary_url, "redis-primary"),
        (&settings.redis.fallback_url, "redis-fallback"),
    ] {
        let url = url.as_ref().expect("a Redis URL").expose().to_string();
        assert!(
            url.starts_with(&format!("redis://{service}:")),
            "{url} does not name {service}"
        );
        at(compose, &format!("services.{service}.healthcheck.test"));
    }

    // Published ports reach the container ports the server listens on.
    let published: BTreeSet<u16> = published_ports(broker).iter().map(|(_, c)| *c).collect();
    assert_eq!(
        published,
        BTreeSet::from([
            default_port(&settings.listen),
            default_port(&settings.metrics.listen)
        ])
    );
    assert_eq!(default_port(&settings.listen), grpc_port());
}

/// The default profile is what it was: one broker and its two standalone Redis; everything else
/// is behind a profile. And no value has a lone `$`: compose would substitute it from the
/// host's environment (a shell's `$` is written `$$`).
#[test]
fn docker_compose_default_profile_is_the_broker_and_two_redis() {
    let compose = &compose();
    let default: BTreeSet<&str> = compose_services(compose, None).into_keys().collect();
    assert_eq!(
        default,
        BTreeSet::from(["tokenbroker", "redis-primary", "redis-fallback"]),
        "plain `docker compose up` must run the same services as before; put the others \
         behind a profile"
    );
    for s in strings(at(compose, "services")) {
        assert!(
            !s.replace("$$", "").contains('$'),
            "compose would substitute the `$` of {s:?} from the host's environment: write `$$`"
        );
    }
}

/// The `cluster` profile: a broker on a Redis Cluster of the profile's own nodes. Its
/// environment loads; its primary is a `redis+cluster://` URL whose seeds are exactly the
/// profile's cluster nodes, at their ports; every node runs in cluster mode and announces its
/// service name, the name the broker resolves (on the compose network, container IPs change);
/// the init service creates the cluster from those nodes, once they answer, with one replica
/// per master (3 masters); the broker waits for it and for its standalone fallback.
#[test]
fn docker_compose_cluster_profile_matches_the_server() {
    const PROFILE: &str = "cluster";
    const BROKER: &str = "tokenbroker-cluster";
    const INIT: &str = "redis-cluster-init";
    let compose = &compose();
    let services = compose_services(compose, Some(PROFILE));
    let service = |name: &str| -> &Value {
        services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name} in profile {PROFILE}"))
    };

    // The broker variant, checked like the default broker.
    let broker = service(BROKER);
    assert_eq!(profiles(broker), vec![PROFILE]);
    let env = string_map(broker, "environment");
    let settings = check_environment(&format!("docker-compose.yml {BROKER}"), &env);
    let primary = settings.redis.primary_url.as_ref().expect("a primary URL");
    assert!(
        primary.is_cluster(),
        "{primary} is not a redis+cluster:// URL"
    );

    // Its seeds are the profile's cluster nodes, every one of them, at their ports.
    let nodes: BTreeMap<&str, &Value> = services
        .iter()
        .filter(|(_, s)| arg_after(&command(s), "--cluster-enabled").is_some())
        .map(|(name, s)| (*name, *s))
        .collect();
    let node_port = |name: &str| -> u16 {
        arg_after(&command(nodes[name]), "--port").map_or(6379, |p| p.parse().unwrap())
    };
    let seeds: Vec<(String, u16)> = primary
        .cluster_seeds()
        .iter()
        .map(|s| host_port(s))
        .collect();
    assert_eq!(
        seeds.len(),
        6,
        "3 masters and 3 replicas as seeds: {seeds:?}"
    );
    for (host, port) in &seeds {
        assert!(
            nodes.contains_key(host.as_str()),
            "seed {host} is not a cluster node of profile {PROFILE} ({:?})",
            nodes.keys()
        );
        assert_eq!(*port, node_port(host), "seed {host}: not the node's port");
    }
    let seed_hosts: BTreeSet<&str> = seeds.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        seed_hosts,
        nodes.keys().copied().collect(),
        "every node once as a seed"
    );

    // Every node: Redis 7 (hostnames in CLUSTER SLOTS), cluster mode, its own name announced
    // and used as its endpoint, health-checked, profile-only, not published to the host (a
    // client there could not resolve the names the nodes announce), evicting by TTL when full.
    for (name, node) in &nodes {
        let args = command(node);
        assert!(
            str_at(node, "image").starts_with("redis:7"),
            "{name}: --cluster-announce-hostname needs Redis 7"
        );
        assert_eq!(profiles(node), vec![PROFILE], "{name}");
        assert_eq!(arg_after(&args, "--cluster-enabled"), Some("yes"), "{name}");
        assert_eq!(
            arg_after(&args, "--cluster-announce-hostname"),
            Some(*name),
            "{name} must announce its service name, which the broker resolves"
        );
        assert_eq!(
            arg_after(&args, "--cluster-preferred-endpoint-type"),
            Some("hostname"),
            "{name}: clients must be sent to the announced name, not the container IP"
        );
        assert_eq!(
            arg_after(&args, "--maxmemory-policy"),
            Some("volatile-ttl"),
            "{name}"
        );
        at(node, "healthcheck.test");
        assert!(node.get("ports").is_none(), "{name}: published to the host");
    }

    // The init service: after every node answers, creates the cluster from exactly those nodes
    // with one replica per master, which makes 3 masters of the 6 nodes.
    let init = service(INIT);
    assert_eq!(profiles(init), vec![PROFILE]);
    for name in nodes.keys() {
        assert_eq!(
            str_at(init, &format!("depends_on.{name}.condition")),
            "service_healthy",
            "{INIT} must wait for {name}"
        );
    }
    let listed: BTreeSet<(String, u16)> = string_map(init, "environment")
        .get("NODES")
        .expect("NODES: the nodes to create the cluster from")
        .split_whitespace()
        .map(|n| host_port(&format!("redis://{n}")))
        .collect();
    assert_eq!(
        listed,
        seeds.iter().cloned().collect(),
        "{INIT} NODES vs the broker's seeds"
    );
    let script = command(init).join(" ");
    assert!(
        script.contains("for node in $$NODES") && script.contains("redis-cli --cluster create "),
        "{INIT} does not create the cluster from $NODES: {script}"
    );
    let words: Vec<String> = script.split_whitespace().map(str::to_string).collect();
    let replicas: usize = arg_after(&words, "--cluster-replicas")
        .expect("--cluster-replicas")
        .parse()
        .unwrap();
    assert_eq!(replicas, 1, "one replica per master");
    assert_eq!(nodes.len() / (replicas + 1), 3, "3 masters");
    assert!(
        words.iter().any(|w| w == "--cluster-yes"),
        "{INIT} would wait for a yes"
    );
    assert!(
        init.get("restart").and_then(Value::as_str).unwrap_or("no") == "no",
        "{INIT} runs once"
    );

    // The broker starts once the cluster is created, with its fallback healthy: a standalone
    // Redis of this profile or the default one, not a cluster node.
    assert_eq!(
        str_at(broker, &format!("depends_on.{INIT}.condition")),
        "service_completed_successfully",
        "{BROKER} must start once {INIT} has created the cluster"
    );
    let fallback = settings
        .redis
        .fallback_url
        .as_ref()
        .expect("a fallback URL");
    let (fallback_host, _) = host_port(fallback.expose());
    assert!(
        !nodes.contains_key(fallback_host.as_str()),
        "the fallback must not be a cluster node"
    );
    service(&fallback_host);
    at(
        compose,
        &format!("services.{fallback_host}.healthcheck.test"),
    );
    assert_eq!(
        str_at(broker, &format!("depends_on.{fallback_host}.condition")),
        "service_healthy"
    );
    for (name, s) in &services {
        for dependency in s
            .get("depends_on")
            .and_then(Value::as_mapping)
            .map(|m| m.keys().filter_map(Value::as_str).collect())
            .unwrap_or_else(Vec::new)
        {
            assert!(
                services.contains_key(dependency),
                "{name} depends on {dependency}, which profile {PROFILE} does not run"
            );
        }
    }

    // Ports: the container ports the server listens on, published on host ports other than
    // the default broker's, so that both can run at once.
    let ports = published_ports(broker);
    let containers: BTreeSet<u16> = ports.iter().map(|(_, c)| *c).collect();
    assert_eq!(
        containers,
        BTreeSet::from([
            default_port(&settings.listen),
            default_port(&settings.metrics.listen)
        ])
    );
    let default_hosts: BTreeSet<u16> = published_ports(at(compose, "services.tokenbroker"))
        .iter()
        .map(|(h, _)| *h)
        .collect();
    for (host, _) in &ports {
        assert!(
            !default_hosts.contains(host),
            "{BROKER} publishes host port {host}, which the default broker uses"
        );
    }
}

/// The numeric UID of the Dockerfile's last USER instruction.
fn dockerfile_uid() -> Option<u64> {
    read(&repo().join("Dockerfile"))
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .and_then(|u| u.trim().parse().ok())
}

#[test]
fn dockerfile_matches_the_server_and_the_toolchain() {
    let text = read(&repo().join("Dockerfile"));
    let instruction = |name: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_string)
            .collect()
    };
    let exposed: BTreeSet<u16> = instruction("EXPOSE")
        .iter()
        .flat_map(|l| l.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    assert_eq!(exposed, BTreeSet::from([grpc_port(), metrics_port()]));
    assert!(
        dockerfile_uid().is_some_and(|u| u != 0),
        "USER must be a numeric non-root UID"
    );
    assert_eq!(instruction("ENTRYPOINT"), vec![r#"["tokenbroker"]"#]);
    assert_eq!(instruction("CMD"), vec![r#"["serve"]"#]);

    // The builder's Rust is at least the workspace's rust-version.
    let workspace = read(&repo().join("Cargo.toml"));
    let msrv = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("workspace rust-version");
    let image = instruction("ARG")
        .iter()
        .find_map(|a| a.strip_prefix("RUST_VERSION=").map(str::to_string))
        .expect("ARG RUST_VERSION=");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        version(&image) >= version(&msrv),
        "builder Rust {image} is older than the workspace rust-version {msrv}"
    );
}

/// Every TOKENBROKER_* name written anywhere in the deployment files (examples included),
/// docs/operations.md or docs/sidecar.md, comments included, is a key the configuration knows (a
/// value-independent check: the loader reports unknown keys as `unknown field`).
#[test]
fn every_variable_mentioned_in_deployment_files_and_docs_is_a_real_key() {
    let probe = |name: &str| -> Option<String> {
        let env = BTreeMap::from([(name.to_string(), String::new())]);
        load(&env).err().filter(|e| e.contains("unknown field"))
    };
    assert!(
        probe("TOKENBROKER_NOT_A_KEY").is_some(),
        "the loader no longer reports unknown keys as `unknown field`: update this test"
    );
    let mut paths = vec![
        repo().join("docker-compose.yml"),
        repo().join("Dockerfile"),
        repo().join("docs/operations.md"),
        repo().join("docs/sidecar.md"),
    ];
    // deploy/ and its subdirectories (the examples).
    let mut dirs = vec![repo().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    let mut names = BTreeSet::new();
    for path in &paths {
        let text = read(path);
        for (i, _) in text.match_indices("TOKENBROKER_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.len() > "TOKENBROKER_".len() {
                names.insert(name);
            }
        }
    }
    assert!(names.len() >= 10, "only {names:?}");
    for name in &names {
        if let Some(e) = probe(name) {
            panic!("{name} is not a configuration key: {e}");
        }
    }
}

/// TLS: the certificate files the environment names are the `tls.crt` and `tls.key` of the
/// Secret the Deployment mounts, the one the cert-manager Certificate writes, for names that
/// include every Service; probes use the plaintext health port.
#[test]
fn tls_files_come_from_the_mounted_secret_and_probes_use_the_health_port() {
    let deploy = Deploy::load();
    let env = deploy.pod_env_as_written();
    let (d, c) = deploy.broker();
    let cert = Path::new(&env["TOKENBROKER_SERVER__TLS__CERT_FILE"]);
    let key = Path::new(&env["TOKENBROKER_SERVER__TLS__KEY_FILE"]);
    assert_eq!(cert.file_name().unwrap(), "tls.crt");
    assert_eq!(key.file_name().unwrap(), "tls.key");
    assert_eq!(cert.parent(), key.parent());
    let dir = cert.parent().unwrap().to_str().unwrap();
    let mount = seq(c, "volumeMounts")
        .iter()
        .find(|m| str_at(m, "mountPath") == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {dir}"));
    assert_eq!(at(mount, "readOnly").as_bool(), Some(true));
    let volume = seq(d, "spec.template.spec.volumes")
        .iter()
        .find(|v| str_at(v, "name") == str_at(mount, "name"))
        .expect("the mounted volume");
    let secret = str_at(volume, "secret.secretName");
    let certificates = deploy.of_kind("Certificate");
    assert_eq!(certificates.len(), 1);
    let certificate = certificates[0];
    assert_eq!(str_at(certificate, "spec.secretName"), secret);
    let names: BTreeSet<&str> = seq(certificate, "spec.dnsNames")
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for service in deploy.of_kind("Service") {
        let name = str_at(service, "metadata.name");
        assert!(
            names.contains(name),
            "the certificate does not name Service {name}"
        );
    }
    if let Some(ca) = env.get("TOKENBROKER_SERVER__TLS__CLIENT_CA_FILE") {
        assert_eq!(Path::new(ca), Path::new(dir).join("ca.crt"));
    }
    let settings = load(&deploy.pod_env()).unwrap();
    assert!(settings.server.tls.enabled());
    let health = default_port(&settings.server.health_listen);
    let health_port = seq(c, "ports")
        .iter()
        .find(|p| str_at(p, "name") == "health")
        .map(|p| u64_at(p, "containerPort"));
    assert_eq!(health_port, Some(u64::from(health)));
}

/// The NetworkPolicy selects the broker pods; only labelled clients reach the gRPC port,
/// anyone the health port (probes); every port it names is a container port.
#[test]
fn the_network_policy_opens_grpc_to_labelled_clients_and_health_to_probes() {
    let deploy = Deploy::load();
    let labels = pod_labels(&deploy);
    let (_, c) = deploy.broker();
    let container_ports: BTreeSet<String> = seq(c, "ports")
        .iter()
        .map(|p| str_at(p, "name").to_string())
        .collect();
    let policies = deploy.of_kind("NetworkPolicy");
    assert_eq!(policies.len(), 1);
    let policy = policies[0];
    assert!(selects(
        &string_map(policy, "spec.podSelector.matchLabels"),
        &labels
    ));
    assert!(
        seq(policy, "spec.policyTypes")
            .iter()
            .any(|t| t.as_str() == Some("Ingress"))
    );
    let mut grpc_from = None;
    let mut health_open = false;
    for rule in seq(policy, "spec.ingress") {
        for port in seq(rule, "ports") {
            let name = str_at(port, "port");
            assert!(container_ports.contains(name), "no container port {name}");
            match name {
                "grpc" => grpc_from = Some(rule.get("from").cloned()),
                "health" => health_open = rule.get("from").is_none(),
                _ => {}
            }
        }
    }
    let from = grpc_from
        .expect("a rule for the gRPC port")
        .expect("restricted by `from`");
    let peers = from.as_sequence().unwrap();
    assert!(
        peers
            .iter()
            .all(|p| !string_map(p, "podSelector.matchLabels").is_empty()),
        "every peer allowed on the gRPC port must carry a client label: {peers:?}"
    );
    assert!(health_open, "probes must reach the health port");
}

/// The sidecar example (deploy/examples/sidecar-deployment.yaml): an application's Deployment
/// with `tokenbroker sidecar` as a native sidecar. Not in the kustomization (it belongs in the
/// application's namespace), so checked here on its own.
const SIDECAR_EXAMPLE: &str = "deploy/examples/sidecar-deployment.yaml";

/// The example's Deployment and its sidecar (the init container running `sidecar`).
struct SidecarExample {
    deployment: Value,
}

impl SidecarExample {
    fn load() -> Self {
        let docs = documents(&repo().join(SIDECAR_EXAMPLE));
        let deployments: Vec<Value> = docs
            .into_iter()
            .filter(|d| str_at(d, "kind") == "Deployment")
            .collect();
        assert_eq!(deployments.len(), 1, "{SIDECAR_EXAMPLE}: one Deployment");
        Self {
            deployment: deployments.into_iter().next().unwrap(),
        }
    }

    fn pod(&self) -> &Value {
        at(&self.deployment, "spec.template.spec")
    }

    fn sidecar(&self) -> &Value {
        let running: Vec<&Value> = seq(self.pod(), "initContainers")
            .iter()
            .filter(|c| {
                c.get("args")
                    .and_then(Value::as_sequence)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    == Some("sidecar")
            })
            .collect();
        assert_eq!(
            running.len(),
            1,
            "{SIDECAR_EXAMPLE}: one init container with args [\"sidecar\", ...]"
        );
        running[0]
    }

    /// The sidecar's environment: plain values only (it holds no secret; a bearer token for
    /// the brokers would come from a Secret of the application's namespace, which this file
    /// does not define).
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for var in seq(self.sidecar(), "env") {
            let name = str_at(var, "name").to_string();
            let value = var
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{SIDECAR_EXAMPLE}: {name} has no plain value"));
            assert!(
                env.insert(name.clone(), value.to_string()).is_none(),
                "{SIDECAR_EXAMPLE}: {name} twice"
            );
        }
        env
    }

    /// The sidecar's environment with the files it names replaced by test files, as
    /// [`Deploy::pod_env`] does for the broker.
    fn env_with_test_files(&self) -> BTreeMap<String, String> {
        with_test_files(self.env())
    }

    /// The port number of a probe (`httpGet.port`, a number or a container port's name).
    fn probe_port(&self, probe: &str) -> u64 {
        let c = self.sidecar();
        let port = at(c, &format!("{probe}.httpGet.port"));
        if let Some(number) = port.as_u64() {
            return number;
        }
        let name = port.as_str().unwrap();
        let found = seq(c, "ports")
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .unwrap_or_else(|| panic!("{probe}: no container port named {name}"));
        u64_at(found, "containerPort")
    }
}

/// The sidecar's environment is what the configuration loader reads and what
/// `sidecar.*` validation accepts; its brokers are the Services of deploy/, over the TLS the
/// broker runs, verifiable with the mounted CA and the Certificate's names; the application is
/// given the sidecar's listener.
#[test]
fn the_sidecar_example_environment_is_what_the_sidecar_reads() {
    let example = SidecarExample::load();
    let env = example.env_with_test_files();
    let settings = check_environment(SIDECAR_EXAMPLE, &env);
    settings
        .sidecar
        .validate()
        .unwrap_or_else(|e| panic!("{SIDECAR_EXAMPLE}: {e}"));
    for name in [
        "TOKENBROKER_SIDECAR__LISTEN",
        "TOKENBROKER_SIDECAR__UPSTREAM",
        "TOKENBROKER_SIDECAR__BROKERS",
    ] {
        assert!(env.contains_key(name), "{SIDECAR_EXAMPLE}: {name} unset");
    }
    let listen = settings.sidecar.listen_addr().unwrap();
    assert!(
        listen.ip().is_loopback(),
        "the application-facing listener belongs on loopback, inside the pod: {listen}"
    );

    // The brokers: Services of deploy/ at their gRPC port, over TLS when the broker runs it.
    let deploy = Deploy::load();
    let broker_tls = load(&deploy.pod_env()).unwrap().server.tls.enabled();
    let services: BTreeMap<&str, &Value> = deploy
        .of_kind("Service")
        .into_iter()
        .map(|s| (str_at(s, "metadata.name"), s))
        .collect();
    let certificate = deploy.of_kind("Certificate")[0];
    let cert_names: BTreeSet<&str> = seq(certificate, "spec.dnsNames")
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let brokers = settings.sidecar.broker_urls();
    assert!(!brokers.is_empty());
    for url in &brokers {
        let uri: axum::http::Uri = url.parse().unwrap();
        let host = uri.host().unwrap();
        let service_name = host.split('.').next().unwrap();
        let service = services.get(service_name).unwrap_or_else(|| {
            panic!(
                "broker {url}: {service_name} is not a Service of deploy/ ({:?})",
                services.keys()
            )
        });
        let grpc = seq(service, "spec.ports")
            .iter()
            .find(|p| str_at(p, "name") == "grpc")
            .map(|p| u64_at(p, "port"));
        assert_eq!(uri.port_u16().map(u64::from), grpc, "broker {url}: port");
        assert_eq!(
            uri.scheme_str() == Some("https"),
            broker_tls,
            "broker {url}: the broker's gRPC port runs TLS = {broker_tls}"
        );
        if broker_tls {
            assert!(
                cert_names.contains(service_name),
                "broker {url}: the Certificate does not name {service_name}"
            );
            if settings.sidecar.discover {
                let name = settings.sidecar.broker_domain_name.as_deref();
                assert!(
                    name.is_some_and(|n| cert_names.contains(n)),
                    "broker {url}: discovered endpoints are IP addresses, which the broker's \
                     certificate does not name: set sidecar.broker_domain_name to one of {cert_names:?}"
                );
            }
        }
    }
    if broker_tls {
        let ca = env
            .get("TOKENBROKER_SIDECAR__BROKER_CA")
            .expect("TOKENBROKER_SIDECAR__BROKER_CA: the broker runs TLS");
        let as_written = &example.env()["TOKENBROKER_SIDECAR__BROKER_CA"];
        assert_ne!(ca, as_written, "replaced by a test file");
        let dir = Path::new(as_written).parent().unwrap().to_str().unwrap();
        let mount = seq(example.sidecar(), "volumeMounts")
            .iter()
            .find(|m| str_at(m, "mountPath") == dir)
            .unwrap_or_else(|| panic!("nothing is mounted at {dir}"));
        assert_eq!(at(mount, "readOnly").as_bool(), Some(true));
        assert!(
            seq(example.pod(), "volumes")
                .iter()
                .any(|v| str_at(v, "name") == str_at(mount, "name")),
            "the volume mounted at {dir}"
        );
    }

    // The application is given the sidecar's listener, in the scheme it serves.
    let app = seq(example.pod(), "containers")
        .iter()
        .find(|c| str_at(c, "name") == "app")
        .expect("a container named app");
    let endpoint = seq(app, "env")
        .iter()
        .find(|v| str_at(v, "name") == "COSMOS_ENDPOINT")
        .map(|v| str_at(v, "value"))
        .expect("COSMOS_ENDPOINT");
    let uri: axum::http::Uri = endpoint.parse().unwrap();
    let scheme = if settings.sidecar.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    assert_eq!(uri.scheme_str(), Some(scheme), "{endpoint}");
    assert_eq!(
        uri.host(),
        Some(listen.ip().to_string().as_str()),
        "{endpoint}"
    );
    assert_eq!(uri.port_u16(), Some(listen.port()), "{endpoint}");

    // Service links off (injected TOKENBROKER_* variables stop the sidecar), and the label the
    // broker's NetworkPolicy admits.
    assert_eq!(
        at(example.pod(), "enableServiceLinks").as_bool(),
        Some(false)
    );
    let labels = string_map(&example.deployment, "spec.template.metadata.labels");
    let policy = deploy.of_kind("NetworkPolicy")[0];
    let admitted = seq(policy, "spec.ingress").iter().any(|rule| {
        rule.get("from")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|peer| peer.get("podSelector"))
            .any(|s| selects(&string_map(s, "matchLabels"), &labels))
    });
    assert!(
        admitted,
        "the broker's NetworkPolicy admits no pod labelled {labels:?}"
    );
}

/// A native sidecar (an init container with `restartPolicy: Always`), of the broker's image as
/// the kustomization names it, hardened as the broker; its probes are on `metrics.listen`'s
/// port, and a sidecar started from the example's settings answers them 200 (and an unknown
/// path 404).
#[tokio::test]
async fn the_sidecar_example_is_a_native_sidecar_with_the_servers_probes() {
    let example = SidecarExample::load();
    let c = example.sidecar();
    assert_eq!(
        c.get("restartPolicy").and_then(Value::as_str),
        Some("Always"),
        "a native sidecar is an init container with restartPolicy: Always"
    );

    // The image: the broker's, as deploy/kustomization.yaml rewrites it.
    let deploy = Deploy::load();
    let (_, broker) = deploy.broker();
    let image = seq(&deploy.kustomization, "images")
        .iter()
        .find(|i| str_at(i, "name") == str_at(broker, "image"))
        .expect("the broker's image in the kustomization");
    assert_eq!(
        str_at(c, "image"),
        format!("{}:{}", str_at(image, "newName"), str_at(image, "newTag")),
        "the sidecar runs the broker's image"
    );

    // Hardened as the broker, as the image's user.
    assert_eq!(at(c, "securityContext.runAsNonRoot").as_bool(), Some(true));
    assert_eq!(
        at(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    assert_eq!(
        at(c, "securityContext.allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert_eq!(
        Some(u64_at(c, "securityContext.runAsUser")),
        dockerfile_uid()
    );
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            at(c, &format!("resources.{kind}.{resource}"));
        }
    }

    // The probes: startup (holds the application back) and readiness on /readyz, liveness on
    // /livez, all on metrics.listen's port, which is a container port.
    let settings = load(&example.env_with_test_files()).unwrap();
    let metrics = u64::from(default_port(&settings.metrics.listen));
    let probes = [
        ("startupProbe", "/readyz"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ];
    for (probe, path) in probes {
        assert_eq!(str_at(c, &format!("{probe}.httpGet.path")), path, "{probe}");
        assert_eq!(example.probe_port(probe), metrics, "{probe}: the port");
    }
    assert!(
        seq(c, "ports")
            .iter()
            .any(|p| u64_at(p, "containerPort") == metrics),
        "metrics.listen's port is not a container port"
    );

    // The sidecar the example configures answers the probes' paths.
    let running = crate::support::sidecar::start(settings).await;
    for (probe, _) in probes {
        let path = str_at(c, &format!("{probe}.httpGet.path"));
        let (status, body) = running.get(path).await;
        assert_eq!(status, 200, "{probe} {path}: {body}");
    }
    assert_eq!(running.get("/healthz").await.0, 404, "an unknown path");
    assert!(running.app_url.starts_with("http://127.0.0.1:"));
    running.stop().await;
}
