//! The Kubernetes manifests and the container image definition, checked
//! offline: `deploy/validate.sh` renders every kustomization with the real
//! kustomize and validates every object against the Kubernetes schemas (it
//! fails on a missing tool: run `scripts/install-test-tools`); these tests
//! then read the rendered objects and check what the schemas cannot: one
//! active gateway per key (paper: a single-replica Recreate Deployment; live:
//! two pods and a Lease, the Role allowing just that Lease), probes hit the gRPC health
//! service on the serving port, pods are locked down, the engines are a
//! StatefulSet with a PodDisruptionBudget, the network policy, and that the
//! configs in the ConfigMaps are valid gateway and engine configs that agree
//! with the objects around them. The engine's entrypoint script is run too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use herd_engine::config::EngineConfig;
use herd_gateway::config::{GatewayConfig, Secret, VenueKind};
use herd_tests::workspace_root;
use serde_json::Value;

/// The overlays that must exist, and the venue each one runs.
const OVERLAYS: &[(&str, VenueKind)] = &[("paper", VenueKind::Paper), ("live", VenueKind::Kraken)];
const GATEWAY_PORT: u64 = 50051;
const ENGINE_PORT: u64 = 50061;
/// The admin HTTP port of both (`/metrics`, health, the engine's dashboard).
const METRICS_PORT: u64 = 9090;
/// The image's user (deploy/Dockerfile `USER`).
const IMAGE_UID: u64 = 65532;

/// Every render (base, paper, live, secrets.example) as its list of objects.
fn renders() -> &'static BTreeMap<String, Vec<Value>> {
    static RENDERS: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let out = tempfile::tempdir().expect("tempdir");
        let script = workspace_root().join("deploy/validate.sh");
        let run = Command::new(&script)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            run.status.success(),
            "deploy/validate.sh failed (a missing tool? run scripts/install-test-tools):\n{log}"
        );
        let mut renders = BTreeMap::new();
        for entry in std::fs::read_dir(out.path()).expect("render dir") {
            let path = entry.expect("entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("render json");
            let objects: Vec<Value> = serde_json::from_str(&text).expect("render is JSON");
            renders.insert(name, objects);
        }
        renders
    })
}

fn overlay(name: &str) -> &'static [Value] {
    renders()
        .get(name)
        .unwrap_or_else(|| panic!("no render of overlay {name}"))
}

fn objects<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn object<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// A ConfigMap by its name before kustomize's hash suffix.
fn config_map<'a>(objs: &'a [Value], base_name: &str) -> &'a Value {
    let found: Vec<_> = objects(objs, "ConfigMap")
        .into_iter()
        .filter(|c| {
            let n = c["metadata"]["name"].as_str().unwrap();
            n.strip_prefix(base_name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
        .collect();
    assert_eq!(found.len(), 1, "exactly one ConfigMap {base_name}");
    found[0]
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn mount_path<'a>(c: &'a Value, volume: &str) -> &'a str {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
}

/// Does a label selector (matchLabels only) select these labels?
fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "only matchLabels selectors are expected"
    );
    selector["matchLabels"]
        .as_object()
        .map(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .unwrap_or(true)
}

fn pod_labels(workload: &Value) -> &Value {
    &workload["spec"]["template"]["metadata"]["labels"]
}

fn gateway_config(objs: &[Value]) -> (GatewayConfig, toml::Table) {
    let text = config_map(objs, "herd-gateway-config")["data"]["gateway.toml"]
        .as_str()
        .expect("gateway.toml in the ConfigMap");
    let mut cfg: GatewayConfig = toml::from_str(text).expect("gateway.toml is a gateway config");
    // Tokens come from files at run time: stand in for them to validate the rest.
    for e in &mut cfg.engines {
        assert!(
            e.token.expose().is_empty(),
            "{}: a token in the ConfigMap",
            e.id
        );
        e.token = Secret::new(format!("stand-in-token-{}", e.id));
    }
    cfg.validate().expect("gateway.toml validates");
    (cfg, toml::from_str(text).unwrap())
}

fn engine_config(objs: &[Value], pod: &str) -> EngineConfig {
    let text = config_map(objs, "herd-engine-config")["data"]["engine.toml"]
        .as_str()
        .expect("engine.toml in the ConfigMap");
    let mut cfg: EngineConfig = toml::from_str(text).expect("engine.toml is an engine config");
    // What the StatefulSet and the entrypoint set in the environment.
    cfg.apply_env(|k| match k {
        "HERD_ENGINE_ID" => Some(pod.to_string()),
        "HERD_CONTROL_TOKEN" => Some("stand-in-control-token".into()),
        "HERD_GATEWAY_TOKEN" => Some(format!("stand-in-token-{pod}")),
        _ => None,
    })
    .unwrap();
    cfg.validate().expect("engine.toml validates");
    cfg
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    let names: BTreeSet<&str> = renders().keys().map(String::as_str).collect();
    for (name, _) in OVERLAYS {
        assert!(names.contains(name), "overlay {name} missing: {names:?}");
    }
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        let ns = object(objs, "Namespace", &format!("herd-{name}"));
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
            "{name}: the namespace enforces the restricted Pod Security Standard"
        );
        for o in objs {
            if o["kind"] != "Namespace" {
                assert_eq!(
                    o["metadata"]["namespace"],
                    format!("herd-{name}"),
                    "{name}: {} {} is in the overlay's namespace",
                    o["kind"],
                    o["metadata"]["name"]
                );
            }
        }
    }
}

/// One active gateway per key. Without a Lease: one replica, Recreate (never
/// two pods alive). With `[lease]` (live): two replicas rolled with
/// maxUnavailable 100% (a standby is never Ready), the pod name as the
/// Lease's identity, a token for the API, a Role that allows get / update /
/// patch on that one Lease and create (which resourceNames cannot limit) in
/// a rule of its own, bound to the gateway's ServiceAccount, and both pods on
/// one node for their ReadWriteOnce state volume.
#[test]
fn gateway_runs_one_active_pod_per_key() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        let gw = object(objs, "Deployment", "herd-gateway");
        let (cfg, _) = gateway_config(objs);
        let pod = &gw["spec"]["template"]["spec"];
        match &cfg.lease {
            None => {
                assert_eq!(gw["spec"]["replicas"], 1, "{name}: gateway replicas");
                assert_eq!(
                    gw["spec"]["strategy"]["type"], "Recreate",
                    "{name}: gateway strategy"
                );
                assert!(
                    gw["spec"]["strategy"].get("rollingUpdate").is_none(),
                    "{name}: no rollingUpdate"
                );
                assert!(objects(objs, "Role").is_empty(), "{name}: no Role");
            }
            Some(lease) => {
                assert_eq!(gw["spec"]["replicas"], 2, "{name}: holder + standby");
                let strategy = &gw["spec"]["strategy"];
                assert_eq!(strategy["type"], "RollingUpdate", "{name}");
                assert_eq!(
                    strategy["rollingUpdate"]["maxUnavailable"], "100%",
                    "{name}"
                );
                assert_eq!(strategy["rollingUpdate"]["maxSurge"], 1, "{name}");
                assert!(lease.identity.is_none(), "{name}: identity is the pod name");
                assert!(lease.renew_deadline_s < f64::from(lease.lease_duration_s));
                let c = container(gw, "gateway");
                let pod_name = c["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == "POD_NAME")
                    .unwrap_or_else(|| panic!("{name}: POD_NAME"));
                assert_eq!(
                    pod_name["valueFrom"]["fieldRef"]["fieldPath"],
                    "metadata.name"
                );
                assert_eq!(pod["automountServiceAccountToken"], true, "{name}");
                // The Role: exactly that Lease, and create on its own.
                let ns = format!("herd-{name}");
                let lease_ns = lease.namespace.clone().unwrap_or(ns.clone());
                assert_eq!(
                    lease_ns, ns,
                    "{name}: the Lease is in the overlay's namespace"
                );
                let bindings: Vec<_> = objects(objs, "RoleBinding")
                    .into_iter()
                    .filter(|b| {
                        b["subjects"].as_array().unwrap().iter().any(|s| {
                            s["kind"] == "ServiceAccount"
                                && s["name"] == pod["serviceAccountName"]
                                && s["namespace"] == ns.as_str()
                        })
                    })
                    .collect();
                assert_eq!(bindings.len(), 1, "{name}: one binding for the gateway");
                let role_ref = &bindings[0]["roleRef"];
                assert_eq!(role_ref["kind"], "Role");
                let role = object(objs, "Role", role_ref["name"].as_str().unwrap());
                let rules = role["rules"].as_array().unwrap();
                assert_eq!(rules.len(), 2, "{name}: {rules:?}");
                for r in rules {
                    assert_eq!(r["apiGroups"], serde_json::json!(["coordination.k8s.io"]));
                    assert_eq!(r["resources"], serde_json::json!(["leases"]));
                }
                let named = rules
                    .iter()
                    .find(|r| r.get("resourceNames").is_some())
                    .expect("a rule on the Lease by name");
                assert_eq!(named["resourceNames"], serde_json::json!([lease.name]));
                assert_eq!(
                    named["verbs"],
                    serde_json::json!(["get", "update", "patch"])
                );
                let create = rules
                    .iter()
                    .find(|r| r.get("resourceNames").is_none())
                    .unwrap();
                assert_eq!(create["verbs"], serde_json::json!(["create"]));
                assert!(objects(objs, "ClusterRole").is_empty());
                // The standby shares the ReadWriteOnce state volume: same node.
                let term = &pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    [0];
                assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
                assert!(selects(&term["labelSelector"], pod_labels(gw)));
                assert!(cfg.state_dir.is_some());
            }
        }
        // Nothing else may run a gateway or scale this one.
        let runs_gateway: Vec<_> = objs
            .iter()
            .filter(|o| {
                o["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["command"][0] == "/usr/local/bin/herd-gateway")
                    })
            })
            .collect();
        assert_eq!(
            runs_gateway.len(),
            1,
            "{name}: one workload runs herd-gateway"
        );
        assert!(
            objects(objs, "HorizontalPodAutoscaler").is_empty(),
            "{name}: no autoscaler"
        );
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace >= 45,
            "{name}: grace period {grace}s must outlast the drain"
        );
    }
    assert!(
        OVERLAYS
            .iter()
            .any(|(name, _)| gateway_config(overlay(name)).0.lease.is_some()),
        "the live overlay runs with a Lease"
    );
}

/// SIGKILL must not cut a shutdown that is still within its own deadline:
/// the grace period outlasts each service's `shutdown_timeout_ms` (which
/// includes the drain delay) by at least this much.
const GRACE_MARGIN_MS: u64 = 5_000;

#[test]
fn grace_periods_outlast_the_services_shutdown_deadlines() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        let (gw_cfg, _) = gateway_config(objs);
        let e_cfg = engine_config(objs, "herd-engine-0");
        for (kind, workload, timeout_ms, drain_ms) in [
            (
                "Deployment",
                "herd-gateway",
                gw_cfg.shutdown_timeout_ms,
                gw_cfg.drain_delay_ms,
            ),
            (
                "StatefulSet",
                "herd-engine",
                e_cfg.shutdown_timeout_ms,
                e_cfg.drain_delay_ms,
            ),
        ] {
            let grace_ms = object(objs, kind, workload)["spec"]["template"]["spec"]
                ["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: {workload} sets no grace period"))
                * 1000;
            assert!(
                timeout_ms + GRACE_MARGIN_MS <= grace_ms,
                "{name}: {workload} shutdown_timeout_ms {timeout_ms} + {GRACE_MARGIN_MS} ms \
                 margin exceeds terminationGracePeriodSeconds ({grace_ms} ms)"
            );
            // Kubernetes takes a moment to drop the pod from endpoints.
            assert!(
                drain_ms >= 1_000,
                "{name}: {workload} drain_delay_ms {drain_ms} is too short for endpoints to update"
            );
        }
    }
}

#[test]
fn probes_are_native_grpc_health_checks_on_the_serving_port() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        for (kind, workload, cname, port) in [
            ("Deployment", "herd-gateway", "gateway", GATEWAY_PORT),
            ("StatefulSet", "herd-engine", "engine", ENGINE_PORT),
        ] {
            let w = object(objs, kind, workload);
            let c = container(w, cname);
            assert_eq!(
                c["ports"][0]["containerPort"], port,
                "{name}: {workload} port"
            );
            assert_eq!(c["ports"][0]["name"], "grpc");
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let p = &c[probe];
                assert_eq!(p["grpc"]["port"], port, "{name}: {workload} {probe}");
                // The overall status ("" service), which the server reports;
                // the gateway's readiness asks for its Gateway service, which
                // a standby (waiting for the Lease) reports NOT_SERVING.
                if workload == "herd-gateway" && probe == "readinessProbe" {
                    assert_eq!(p["grpc"]["service"], "herd.gateway.v1.Gateway", "{name}");
                } else {
                    assert!(
                        p["grpc"].get("service").is_none_or(|s| s == ""),
                        "{name}: {workload} {probe} service"
                    );
                }
                for other in ["httpGet", "tcpSocket", "exec"] {
                    assert!(p.get(other).is_none(), "{name}: {workload} {probe} {other}");
                }
            }
            // The Service reaches the same port.
            let svc = object(objs, "Service", workload);
            assert_eq!(svc["spec"]["ports"][0]["port"], port);
            assert_eq!(svc["spec"]["ports"][0]["targetPort"], "grpc");
            assert!(selects(
                &serde_json::json!({"matchLabels": svc["spec"]["selector"]}),
                pod_labels(w)
            ));
        }
        // And the servers listen there, on every interface.
        let (gw, _) = gateway_config(objs);
        assert_eq!(u64::from(gw.listen.port()), GATEWAY_PORT);
        assert!(
            gw.listen.ip().is_unspecified(),
            "{name}: gateway listens on 0.0.0.0"
        );
        let e = engine_config(objs, "herd-engine-0");
        assert_eq!(u64::from(e.listen.port()), ENGINE_PORT);
        assert!(
            e.listen.ip().is_unspecified(),
            "{name}: engine listens on 0.0.0.0"
        );
    }
}

#[test]
fn admin_ports_serve_metrics_and_prometheus_is_told_where() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        for (kind, workload, cname) in [
            ("Deployment", "herd-gateway", "gateway"),
            ("StatefulSet", "herd-engine", "engine"),
        ] {
            let w = object(objs, kind, workload);
            let c = container(w, cname);
            let port = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "metrics")
                .unwrap_or_else(|| panic!("{name}: {workload} has no port named metrics"));
            assert_eq!(port["containerPort"], METRICS_PORT, "{name}: {workload}");
            let ann = &w["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(ann["prometheus.io/scrape"], "true", "{name}: {workload}");
            assert_eq!(
                ann["prometheus.io/port"],
                METRICS_PORT.to_string(),
                "{name}: {workload}"
            );
            assert_eq!(ann["prometheus.io/path"], "/metrics", "{name}: {workload}");
            let svc = object(objs, "Service", workload);
            assert!(
                svc["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == METRICS_PORT && p["targetPort"] == "metrics"),
                "{name}: Service {workload} exposes the metrics port"
            );
            // Some policy lets a scraper in on that port (default deny).
            let allowed = objects(objs, "NetworkPolicy").iter().any(|p| {
                p["spec"]["podSelector"] != serde_json::json!({})
                    && selects(&p["spec"]["podSelector"], pod_labels(w))
                    && p["spec"]["ingress"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|r| {
                            r["ports"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|p| p["port"] == METRICS_PORT)
                        })
            });
            assert!(allowed, "{name}: no policy admits scrapes of {workload}");
        }
        // The services serve it there, on every interface.
        let (gw, _) = gateway_config(objs);
        let gw_http = gw.http_listen.expect("gateway http_listen");
        assert_eq!(u64::from(gw_http.port()), METRICS_PORT, "{name}");
        assert!(gw_http.ip().is_unspecified(), "{name}");
        let e = engine_config(objs, "herd-engine-0");
        let e_http = e.http_listen.expect("engine http_listen");
        assert_eq!(u64::from(e_http.port()), METRICS_PORT, "{name}");
        assert!(e_http.ip().is_unspecified(), "{name}");
    }
}

#[test]
fn pods_run_as_the_image_user_locked_down() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        for (kind, workload) in [
            ("Deployment", "herd-gateway"),
            ("StatefulSet", "herd-engine"),
        ] {
            let w = object(objs, kind, workload);
            let spec = &w["spec"]["template"]["spec"];
            let what = format!("{name}: {workload}");
            // Only a gateway with a Lease has an API token (for that Lease).
            let lease = workload == "herd-gateway" && gateway_config(objs).0.lease.is_some();
            assert_eq!(spec["automountServiceAccountToken"], lease, "{what}");
            let sa = spec["serviceAccountName"].as_str().unwrap();
            assert_eq!(
                object(objs, "ServiceAccount", sa)["automountServiceAccountToken"],
                false
            );
            let pod = &spec["securityContext"];
            assert_eq!(pod["runAsNonRoot"], true, "{what}");
            assert_eq!(pod["runAsUser"], IMAGE_UID, "{what}");
            assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault", "{what}");
            assert!(spec.get("hostNetwork").is_none() && spec.get("hostPID").is_none());
            for c in spec["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["runAsNonRoot"], true, "{what}");
                assert_eq!(sc["runAsUser"], IMAGE_UID, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{what}"
                );
                assert!(sc["capabilities"].get("add").is_none(), "{what}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
                for r in ["cpu", "memory"] {
                    assert!(
                        c["resources"]["requests"][r].is_string(),
                        "{what}: request {r}"
                    );
                }
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{what}: memory limit"
                );
                let image = c["image"].as_str().unwrap();
                assert!(
                    !image.ends_with(":latest") && image.contains(':') || image.contains('@'),
                    "{what}: image {image} is pinned"
                );
            }
        }
    }
}

#[test]
fn engines_are_a_statefulset_with_a_disruption_budget_and_a_volume() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        let sts = object(objs, "StatefulSet", "herd-engine");
        let spec = &sts["spec"];
        assert_eq!(spec["serviceName"], "herd-engine");
        assert_eq!(
            object(objs, "Service", "herd-engine")["spec"]["clusterIP"],
            "None"
        );
        assert!(selects(&spec["selector"], pod_labels(sts)));
        let pdbs: Vec<_> = objects(objs, "PodDisruptionBudget")
            .into_iter()
            .filter(|p| selects(&p["spec"]["selector"], pod_labels(sts)))
            .collect();
        assert_eq!(pdbs.len(), 1, "{name}: one PDB covers the engines");
        let max = &pdbs[0]["spec"]["maxUnavailable"];
        assert!(
            max == 1 || pdbs[0]["spec"]["minAvailable"].is_number(),
            "{name}: {max}"
        );
        // The engine id is the pod's name.
        let c = container(sts, "engine");
        let id = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "HERD_ENGINE_ID")
            .expect("HERD_ENGINE_ID");
        assert_eq!(id["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
        // The SQLite journal lives on the pod's own claim.
        let claims = spec["volumeClaimTemplates"].as_array().unwrap();
        assert_eq!(claims[0]["metadata"]["name"], "data");
        let cfg = engine_config(objs, "herd-engine-0");
        assert_eq!(
            Path::new(mount_path(c, "data")),
            cfg.data_dir,
            "{name}: data_dir"
        );
        // The engine finds the gateway through its Service.
        let url = cfg.gateway_url.strip_prefix("http://").unwrap();
        assert_eq!(
            url,
            format!("herd-gateway:{GATEWAY_PORT}"),
            "{name}: gateway_url"
        );
        // No pod has a PodDisruptionBudget that would block a single-replica
        // gateway's node drain.
        let gw = object(objs, "Deployment", "herd-gateway");
        assert!(
            objects(objs, "PodDisruptionBudget")
                .iter()
                .all(|p| !selects(&p["spec"]["selector"], pod_labels(gw))),
            "{name}: no PDB on the gateway"
        );
    }
}

#[test]
fn gateway_config_has_an_entry_for_every_engine_pod() {
    for (name, venue) in OVERLAYS {
        let objs = overlay(name);
        let (cfg, raw) = gateway_config(objs);
        assert_eq!(cfg.venue, *venue, "{name}: venue");
        let sts = object(objs, "StatefulSet", "herd-engine");
        let replicas = sts["spec"]["replicas"].as_u64().unwrap();
        let pods: BTreeSet<String> = (0..replicas).map(|i| format!("herd-engine-{i}")).collect();
        let ids: BTreeSet<String> = cfg.engines.iter().map(|e| e.id.clone()).collect();
        assert!(
            pods.is_subset(&ids),
            "{name}: pods {pods:?} need gateway [[engines]] entries (have {ids:?})"
        );
        // Each engine's token is the Secret key named after it, mounted where
        // both the gateway and the engines read it.
        let gw = object(objs, "Deployment", "herd-gateway");
        let gw_tokens = mount_path(container(gw, "gateway"), "engine-tokens");
        assert_eq!(
            volume(gw, "engine-tokens")["secret"]["secretName"],
            "herd-engine-tokens"
        );
        let engine_tokens = mount_path(container(sts, "engine"), "engine-tokens");
        assert_eq!(
            volume(sts, "engine-tokens")["secret"]["secretName"],
            "herd-engine-tokens"
        );
        assert_eq!(
            engine_tokens, "/etc/herd/engine-tokens",
            "the entrypoint's default"
        );
        for e in &cfg.engines {
            assert_eq!(
                e.token_file.as_deref(),
                Some(format!("{gw_tokens}/{}", e.id).as_str()),
                "{name}: {} reads its token from the Secret",
                e.id
            );
        }
        // The admin token comes from a Secret, never the ConfigMap.
        assert!(
            raw.get("admin_token").is_none(),
            "{name}: admin_token in the ConfigMap"
        );
        let env = container(gw, "gateway")["env"].as_array().unwrap();
        let admin = env
            .iter()
            .find(|e| e["name"] == "HERD_GATEWAY_ADMIN_TOKEN")
            .expect("admin token env");
        assert!(admin["valueFrom"]["secretKeyRef"].is_object());
        // Kraken: credentials from the mounted Secret, the nonce on the state volume.
        if *venue == VenueKind::Kraken {
            let k = raw["kraken"].as_table().expect("[kraken]");
            let creds = k["credentials"].as_table().unwrap();
            assert_eq!(creds["source"].as_str(), Some("files"));
            let dir = mount_path(container(gw, "gateway"), "kraken-api");
            let kraken = volume(gw, "kraken-api");
            assert_eq!(kraken["secret"]["secretName"], "herd-kraken-api");
            assert!(kraken["secret"].get("optional").is_none_or(|o| o == false));
            for (field, key) in [("key_path", "api-key"), ("secret_path", "api-secret")] {
                assert_eq!(creds[field].as_str(), Some(format!("{dir}/{key}").as_str()));
            }
            let state = mount_path(container(gw, "gateway"), "state");
            let nonce = k["nonce_file"].as_str().expect("nonce_file");
            assert!(nonce.starts_with(&format!("{state}/")), "{name}: {nonce}");
            let v = volume(gw, "state");
            assert!(
                v.get("emptyDir").is_none(),
                "{name}: the nonce survives a new pod"
            );
            let claim = v["persistentVolumeClaim"]["claimName"].as_str().unwrap();
            object(objs, "PersistentVolumeClaim", claim);
        } else {
            assert!(raw.get("kraken").is_none(), "{name}: paper has no [kraken]");
        }
    }
}

#[test]
fn only_engines_reach_the_gateway_and_the_gateway_reaches_only_dns_https_and_its_api_server() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        let policies = objects(objs, "NetworkPolicy");
        let deny = policies
            .iter()
            .find(|p| p["spec"]["podSelector"] == serde_json::json!({}))
            .expect("a default-deny policy");
        assert!(deny["spec"].get("ingress").is_none() && deny["spec"].get("egress").is_none());
        assert_eq!(
            deny["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );

        let gw = object(objs, "Deployment", "herd-gateway");
        let engine = object(objs, "StatefulSet", "herd-engine");
        let on_gateway: Vec<_> = policies
            .iter()
            .filter(|p| selects(&p["spec"]["podSelector"], pod_labels(gw)))
            .filter(|p| p["spec"]["podSelector"] != serde_json::json!({}))
            .collect();
        assert!(
            !on_gateway.is_empty(),
            "{name}: a policy selects the gateway"
        );
        for p in on_gateway {
            for rule in p["spec"]["ingress"].as_array().into_iter().flatten() {
                let from = rule["from"].as_array().expect("ingress names its peers");
                let ports = rule["ports"].as_array().expect("ingress names its ports");
                if ports.iter().all(|p| p["port"] == METRICS_PORT) {
                    // The read-only admin port: named scrapers, never everyone.
                    assert!(!from.is_empty(), "{name}: metrics open to all");
                    for peer in from {
                        assert!(peer.get("ipBlock").is_none(), "{name}: {peer}");
                        assert!(peer.get("podSelector").is_some(), "{name}: {peer}");
                    }
                    continue;
                }
                for peer in from {
                    assert!(
                        peer.get("ipBlock").is_none() && peer.get("namespaceSelector").is_none(),
                        "{name}: gateway ingress peer {peer}"
                    );
                    assert!(selects(&peer["podSelector"], pod_labels(engine)));
                    assert!(!selects(&peer["podSelector"], pod_labels(gw)));
                }
                let ports = rule["ports"].as_array().expect("ingress names its ports");
                for port in ports {
                    assert_eq!(port["port"], GATEWAY_PORT, "{name}");
                    assert_eq!(port["protocol"], "TCP");
                }
            }
            for rule in p["spec"]["egress"].as_array().into_iter().flatten() {
                let ports = rule["ports"].as_array().expect("egress names its ports");
                for port in ports {
                    let pair = (
                        port["protocol"].as_str().unwrap(),
                        port["port"].as_u64().unwrap(),
                    );
                    // 6443: the API server behind the "kubernetes" Service,
                    // only for a gateway that takes a Lease.
                    let lease = gateway_config(objs).0.lease.is_some();
                    assert!(
                        matches!(pair, ("UDP", 53) | ("TCP", 53) | ("TCP", 443))
                            || (lease && pair == ("TCP", 6443)),
                        "{name}: gateway egress {pair:?}"
                    );
                    assert!(port.get("endPort").is_none());
                }
            }
        }
    }
}

#[test]
fn secrets_are_referenced_never_committed() {
    let examples = &renders()["secrets.example"];
    let documented: BTreeMap<&str, BTreeSet<&str>> = examples
        .iter()
        .map(|s| {
            let keys = s["stringData"].as_object().unwrap();
            for v in keys.values() {
                assert!(
                    v.as_str().unwrap().contains("PLACEHOLDER"),
                    "{v}: a placeholder"
                );
            }
            (
                s["metadata"]["name"].as_str().unwrap(),
                keys.keys().map(String::as_str).collect(),
            )
        })
        .collect();
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        assert!(
            objects(objs, "Secret").is_empty(),
            "{name}: a Secret in the render"
        );
        for w in objs
            .iter()
            .filter(|o| o["spec"]["template"]["spec"].is_object())
        {
            let spec = &w["spec"]["template"]["spec"];
            for v in spec["volumes"].as_array().into_iter().flatten() {
                if let Some(secret) = v["secret"]["secretName"].as_str() {
                    let keys = documented
                        .get(secret)
                        .unwrap_or_else(|| panic!("{name}: Secret {secret} undocumented"));
                    for item in v["secret"]["items"].as_array().into_iter().flatten() {
                        assert!(keys.contains(item["key"].as_str().unwrap()));
                    }
                    // Readable by the pod's fsGroup only.
                    assert_eq!(v["secret"]["defaultMode"], 0o440, "{name}: {secret} mode");
                }
            }
            for c in spec["containers"].as_array().unwrap() {
                for e in c["env"].as_array().into_iter().flatten() {
                    if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                        let secret = r["name"].as_str().unwrap();
                        let keys = documented
                            .get(secret)
                            .unwrap_or_else(|| panic!("{name}: Secret {secret} undocumented"));
                        assert!(keys.contains(r["key"].as_str().unwrap()), "{name}: {r}");
                    } else {
                        assert!(
                            !e["name"].as_str().unwrap().contains("TOKEN")
                                && e["name"] != "DATABASE_URL",
                            "{name}: {} must come from a Secret",
                            e["name"]
                        );
                    }
                }
            }
        }
    }
    // Every engine pod has a token key in the example.
    let replicas = object(overlay("paper"), "StatefulSet", "herd-engine")["spec"]["replicas"]
        .as_u64()
        .unwrap();
    for i in 0..replicas {
        assert!(documented["herd-engine-tokens"].contains(format!("herd-engine-{i}").as_str()));
    }
}

#[test]
fn dockerfile_builds_what_the_manifests_run() {
    let root = workspace_root();
    let docker = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    assert!(
        docker.contains("cargo build --release --locked -p herd-gateway -p herd-engine -p herdctl"),
        "the builder builds the three binaries"
    );
    assert!(docker.contains(&format!("USER {IMAGE_UID}:{IMAGE_UID}")));
    assert!(
        docker.contains(
            "COPY --chmod=0755 deploy/engine-entrypoint.sh /usr/local/bin/herd-engine-k8s"
        )
    );
    let installed = ["herd-gateway", "herd-engine", "herdctl", "herd-engine-k8s"];
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        for (kind, w, c) in [
            ("Deployment", "herd-gateway", "gateway"),
            ("StatefulSet", "herd-engine", "engine"),
        ] {
            let cmd = container(object(objs, kind, w), c)["command"][0]
                .as_str()
                .unwrap();
            let bin = cmd
                .strip_prefix("/usr/local/bin/")
                .expect("installed in /usr/local/bin");
            assert!(
                installed.contains(&bin),
                "{name}: {cmd} is not in the image"
            );
        }
    }
    // The build context leaves out build output and local state.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for p in ["target", ".herd", ".git"] {
        assert!(ignore.lines().any(|l| l == p), ".dockerignore lacks {p}");
    }
}

// ---- the engine's entrypoint (deploy/engine-entrypoint.sh) -----------------

struct Entrypoint {
    dir: tempfile::TempDir,
}

impl Entrypoint {
    /// A fake herd-engine that prints its arguments and environment.
    fn new() -> Entrypoint {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("herd-engine");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"args=$*\"\necho \"token=${HERD_GATEWAY_TOKEN:-}\"\necho \"db=${DATABASE_URL:-}\"\n",
        )
        .unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&fake, mode).unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        Entrypoint { dir }
    }

    fn put(&self, sub: &str, key: &str, value: &str) {
        let d = self.dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(key), value).unwrap();
    }

    fn run(&self, id: &str) -> (i32, String) {
        let out = Command::new("sh")
            .arg(workspace_root().join("deploy/engine-entrypoint.sh"))
            .args(["--config", "/etc/herd/config/engine.toml"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HERD_ENGINE_ID", id)
            .env("HERD_TOKENS_DIR", self.dir.path().join("tokens"))
            .env("HERD_DATABASE_DIR", self.dir.path().join("database"))
            .env("HERD_ENGINE_BIN", self.dir.path().join("herd-engine"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn entrypoint_picks_the_pods_own_token_and_database() {
    let ep = Entrypoint::new();
    ep.put("tokens", "herd-engine-0", "token-zero\n");
    ep.put("tokens", "herd-engine-1", "token-one\n");

    // No database Secret mounted: SQLite.
    let (code, out) = ep.run("herd-engine-1");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("args=--config /etc/herd/config/engine.toml"),
        "{out}"
    );
    assert!(out.contains("token=token-one\n"), "{out}");
    assert!(out.contains("db=\n"), "{out}");

    // The optional Secret is absent: an empty mount (kubelet's own dot entries).
    std::fs::create_dir_all(ep.dir.path().join("database/..data")).unwrap();
    let (code, out) = ep.run("herd-engine-0");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("token=token-zero\n") && out.contains("db=\n"),
        "{out}"
    );

    // The Secret exists: this engine's URL.
    ep.put("database", "herd-engine-0", "postgres://e0@db/e0\n");
    let (code, out) = ep.run("herd-engine-0");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("db=postgres://e0@db/e0\n"), "{out}");

    // The Secret exists without this engine's key: refuse, never fall back.
    let (code, out) = ep.run("herd-engine-1");
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("herd-engine-database has no key 'herd-engine-1'"),
        "{out}"
    );
}

#[test]
fn entrypoint_refuses_without_a_token_or_an_id() {
    let ep = Entrypoint::new();
    let (code, out) = ep.run("herd-engine-2");
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("add the key 'herd-engine-2' to the Secret herd-engine-tokens"),
        "{out}"
    );
    assert!(!out.contains("args="), "herd-engine must not start: {out}");

    ep.put("tokens", "herd-engine-2", "");
    let (code, out) = ep.run("herd-engine-2");
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("empty"), "{out}");

    let (code, out) = ep.run("");
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("HERD_ENGINE_ID is not set"), "{out}");
    let (code, out) = ep.run("../etc");
    assert_eq!(code, 78, "{out}");
}

/// Configuration reload in place (docs/config.md, deploy/README.md): the
/// gateway's and the engines' ConfigMaps keep one name (no content hash,
/// which would roll the pods on every change instead), and each is mounted
/// as a directory, never with subPath (a subPath mount never updates), so
/// an applied change reaches the running pods' files and they reload it.
#[test]
fn config_maps_keep_their_names_and_mount_as_directories_so_pods_reload_in_place() {
    for (name, _) in OVERLAYS {
        let objs = overlay(name);
        for (kind, workload, container_name, map) in [
            (
                "Deployment",
                "herd-gateway",
                "gateway",
                "herd-gateway-config",
            ),
            ("StatefulSet", "herd-engine", "engine", "herd-engine-config"),
        ] {
            assert_eq!(
                config_map(objs, map)["metadata"]["name"],
                map,
                "{name}: {map} has a stable name"
            );
            let w = object(objs, kind, workload);
            let volumes = w["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
            let vol = volumes
                .iter()
                .find(|v| v["configMap"]["name"] == map)
                .unwrap_or_else(|| panic!("{name}: {workload} mounts no volume of {map}"));
            let c = container(w, container_name);
            let mounts: Vec<&Value> = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["name"] == vol["name"])
                .collect();
            assert!(!mounts.is_empty(), "{name}: {workload} mounts {map}");
            for m in mounts {
                assert!(
                    m.get("subPath").is_none(),
                    "{name}: {workload} mounts {map} with subPath, which never updates"
                );
            }
        }
    }
}
