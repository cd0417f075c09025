//! `deploy/kubernetes/*.yaml`: every document deserializes into its Kubernetes API type (and
//! nothing in it is dropped doing so: a misspelt field would be), and the manifests name only
//! what the project has: the images `scripts/image.sh` builds (built here, and run), flags the
//! binaries accept, ports they are told to listen on, configuration that parses, paths that lie
//! on a mounted volume, and the capabilities of the systemd unit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PersistentVolumeClaim, PodSpec, Service,
};
use lazaret_tests::agent_process::workspace_binary;
use serde::Deserialize;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every document of every manifest, as JSON values, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            documents.push((name, value));
        }
    }
    documents
}

/// Paths present in `written` but not in `typed` (what the API type does not know).
fn dropped(written: &Value, typed: &Value, at: &str, out: &mut Vec<String>) {
    match (written, typed) {
        (Value::Object(written), Value::Object(typed)) => {
            for (key, value) in written {
                match typed.get(key) {
                    Some(typed) => dropped(value, typed, &format!("{at}.{key}"), out),
                    None => out.push(format!("{at}.{key}")),
                }
            }
        }
        (Value::Array(written), Value::Array(typed)) => {
            for (index, (written, typed)) in written.iter().zip(typed).enumerate() {
                dropped(written, typed, &format!("{at}[{index}]"), out);
            }
        }
        _ => {}
    }
}

/// `value` as the API type `T`, failing on a field the type drops.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(file: &str, value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|error| panic!("{file}: not a valid {}: {error}", value["kind"]));
    let mut lost = Vec::new();
    dropped(value, &serde_json::to_value(&typed).unwrap(), "", &mut lost);
    assert!(
        lost.is_empty(),
        "{file}: fields the API does not have: {lost:?}"
    );
    typed
}

#[derive(Default)]
struct Manifests {
    config_maps: Vec<ConfigMap>,
    daemon_sets: Vec<DaemonSet>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    claims: Vec<PersistentVolumeClaim>,
}

fn manifests() -> Manifests {
    let mut all = Manifests::default();
    let mut namespaces = 0;
    for (file, value) in documents() {
        assert!(value["apiVersion"].is_string(), "{file}: apiVersion");
        match value["kind"].as_str().unwrap_or_default() {
            "Namespace" => {
                typed::<Namespace>(&file, &value);
                namespaces += 1;
            }
            "ConfigMap" => all.config_maps.push(typed(&file, &value)),
            "DaemonSet" => all.daemon_sets.push(typed(&file, &value)),
            "Deployment" => all.deployments.push(typed(&file, &value)),
            "Service" => all.services.push(typed(&file, &value)),
            "PersistentVolumeClaim" => all.claims.push(typed(&file, &value)),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
        let namespace = value["metadata"]["namespace"].as_str();
        if value["kind"] != "Namespace" {
            assert_eq!(namespace, Some("lazaret"), "{file}: {}", value["kind"]);
        }
    }
    assert_eq!(namespaces, 1);
    all
}

fn pod(spec: Option<&PodSpec>) -> &PodSpec {
    spec.expect("a pod template")
}

fn only_container(spec: &PodSpec) -> &Container {
    assert_eq!(spec.containers.len(), 1);
    &spec.containers[0]
}

fn config_file(manifests: &Manifests, name: &str, key: &str) -> String {
    manifests
        .config_maps
        .iter()
        .find(|map| map.metadata.name.as_deref() == Some(name))
        .and_then(|map| map.data.as_ref()?.get(key).cloned())
        .unwrap_or_else(|| panic!("ConfigMap {name} holds {key}"))
}

/// The container's arguments with the downward API's variables given example values.
fn arguments(container: &Container) -> Vec<String> {
    container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|argument| {
            argument
                .replace("$(NODE_NAME)", "node-x")
                .replace("$(NODE_IP)", "10.0.0.9")
                .replace("$(POD_IP)", "10.1.0.9")
        })
        .collect()
}

/// `binary ARGS… --help` succeeds: clap refuses an unknown flag before it reaches `--help`.
fn accepts(binary: &str, arguments: &[String]) {
    let output = Command::new(workspace_binary(binary).unwrap())
        .args(arguments)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{binary} {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The value after `flag` in `arguments`.
fn flag<'a>(arguments: &'a [String], flag: &str) -> &'a str {
    let at = arguments.iter().position(|argument| argument == flag);
    at.and_then(|at| arguments.get(at + 1))
        .unwrap_or_else(|| panic!("{flag} in {arguments:?}"))
}

/// (port, protocol) of each container port.
fn ports(container: &Container) -> BTreeSet<(i32, String)> {
    container
        .ports
        .iter()
        .flatten()
        .map(|port| {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            (port.container_port, protocol)
        })
        .collect()
}

fn port_of(address: &str) -> i32 {
    address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Fails unless `path` lies on one of the container's volume mounts.
fn on_a_mount(container: &Container, what: &str, path: &Path) {
    let mounted = container.volume_mounts.iter().flatten().any(|mount| {
        let mount = Path::new(&mount.mount_path);
        path == mount || path.starts_with(mount)
    });
    assert!(mounted, "{what} {} is on no volume mount", path.display());
}

/// Every mount names a volume of the pod.
fn mounts_have_volumes(spec: &PodSpec) {
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|volume| volume.name.as_str())
        .collect();
    for mount in only_container(spec).volume_mounts.iter().flatten() {
        assert!(
            volumes.contains(mount.name.as_str()),
            "volume {}",
            mount.name
        );
    }
}

/// The TOML text written to a temporary file, for the binaries' own configuration readers.
fn as_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// The image `scripts/image.sh COMPONENT` tags by default.
fn default_image(component: &str) -> String {
    let script = std::fs::read_to_string(repo("scripts/image.sh")).unwrap();
    assert!(
        script.contains("tag=${2:-lazaret/$component:dev}"),
        "the script's default tag"
    );
    format!("lazaret/{component}:dev")
}

#[test]
fn the_agent_daemon_set_runs_what_the_project_builds() {
    let manifests = manifests();
    assert_eq!(manifests.daemon_sets.len(), 1);
    let daemon_set = &manifests.daemon_sets[0];
    let spec = pod(daemon_set.spec.template.spec.as_ref());
    let agent = only_container(spec);
    assert_eq!(
        agent.image.as_deref(),
        Some(default_image("agent").as_str())
    );
    assert_eq!(spec.host_pid, Some(true), "the host's processes");
    assert_eq!(spec.host_network, Some(true));
    assert!(
        spec.tolerations
            .iter()
            .flatten()
            .any(
                |toleration| toleration.operator.as_deref() == Some("Exists")
                    && toleration.key.is_none()
            ),
        "every node, tainted or not"
    );
    mounts_have_volumes(spec);

    // The flags exist, and the ports are those the agent is told to listen on.
    let arguments = arguments(agent);
    accepts("lazaret-agent", &arguments);
    let expected = BTreeSet::from([
        (port_of(flag(&arguments, "--api-listen")), "TCP".to_string()),
        (
            port_of(flag(&arguments, "--gossip-listen")),
            "UDP".to_string(),
        ),
        (
            port_of(flag(&arguments, "--metrics-listen")),
            "TCP".to_string(),
        ),
    ]);
    assert_eq!(ports(agent), expected);

    // The configuration parses, and every path in it is on a volume.
    let config_path = flag(&arguments, "--config");
    on_a_mount(agent, "--config", Path::new(config_path));
    let text = config_file(&manifests, "lazaret-agent", "agent.toml");
    let raw = lazaret_agent::config::RawConfig::from_file(as_file(&text).path()).unwrap();
    on_a_mount(agent, "api.tls_dir", &raw.api.tls_dir);
    on_a_mount(agent, "state.dir", &raw.state.dir);
    on_a_mount(agent, "docker.socket", Path::new(&raw.docker.socket));
    on_a_mount(
        agent,
        "containerd.socket",
        Path::new(&raw.containerd.socket),
    );
    on_a_mount(agent, "detections.token_file", &raw.detections.token_file);
    on_a_mount(agent, "detections.socket", &raw.detections.socket);
    for key in &raw.bundles.trusted_keys {
        on_a_mount(agent, "bundles.trusted_keys", key);
    }
    // The gossip seed is the controller's headless gossip Service.
    let seed = raw.gossip.seeds.first().expect("a gossip seed");
    let service = manifests
        .services
        .iter()
        .find(|service| {
            seed.starts_with(&format!(
                "{}.lazaret.svc",
                service.metadata.name.as_deref().unwrap()
            ))
        })
        .expect("the seed names a Service");
    let service_spec = service.spec.as_ref().unwrap();
    assert_eq!(service_spec.cluster_ip.as_deref(), Some("None"), "headless");
    assert!(
        service_spec
            .ports
            .iter()
            .flatten()
            .any(|port| port.port == port_of(seed) && port.protocol.as_deref() == Some("UDP"))
    );

    // Exactly the systemd unit's capabilities, nothing else, not privileged.
    let bounding: BTreeSet<String> = lazaret_tests::agent_unit::capabilities()
        .into_iter()
        .collect();
    let security = agent.security_context.as_ref().unwrap();
    let capabilities = security.capabilities.as_ref().unwrap();
    let added: BTreeSet<String> = capabilities.add.clone().unwrap().into_iter().collect();
    assert_eq!(added, bounding);
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(false));
}

#[test]
fn the_controller_deployment_runs_what_the_project_builds() {
    let manifests = manifests();
    assert_eq!(manifests.deployments.len(), 1);
    let deployment = &manifests.deployments[0];
    let deployment_spec = &deployment.spec;
    assert_eq!(deployment_spec.replicas, Some(1));
    assert_eq!(
        deployment_spec
            .strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "never two controllers on one state"
    );
    let spec = pod(deployment_spec.template.spec.as_ref());
    let controller = only_container(spec);
    assert_eq!(
        controller.image.as_deref(),
        Some(default_image("controller").as_str())
    );
    assert_eq!(
        controller.command.as_deref(),
        Some(&["/usr/local/bin/lazaret-controller".to_string()][..])
    );
    mounts_have_volumes(spec);
    let arguments = arguments(controller);
    accepts("lazaret-controller", &arguments);
    let text = config_file(&manifests, "lazaret-controller", "controller.toml");
    let raw = lazaret_controller::config::RawConfig::from_file(as_file(&text).path()).unwrap();
    on_a_mount(
        controller,
        "--config",
        Path::new(flag(&arguments, "--config")),
    );
    on_a_mount(controller, "api.tls_dir", &raw.api.tls_dir);
    on_a_mount(controller, "state.dir", &raw.state.dir);
    let signing_key = raw.bundles.signing_key.clone().expect("a signing key");
    on_a_mount(controller, "bundles.signing_key", &signing_key);
    let expected = BTreeSet::from([
        (port_of(flag(&arguments, "--api-listen")), "TCP".to_string()),
        (
            port_of(flag(&arguments, "--gossip-listen")),
            "UDP".to_string(),
        ),
        (port_of(&raw.metrics.listen), "TCP".to_string()),
    ]);
    assert_eq!(ports(controller), expected);
    // Every Service's target port is a named port of the controller.
    let names: BTreeSet<&str> = controller
        .ports
        .iter()
        .flatten()
        .filter_map(|port| port.name.as_deref())
        .collect();
    for service in &manifests.services {
        for port in service.spec.as_ref().unwrap().ports.iter().flatten() {
            let target = port.target_port.as_ref().unwrap();
            let k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) = target
            else {
                panic!("target ports by name: {target:?}");
            };
            assert!(names.contains(name.as_str()), "{name}");
        }
    }
    let claim = deployment_spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find_map(|volume| volume.persistent_volume_claim.as_ref())
        .unwrap();
    assert!(
        manifests
            .claims
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(claim.claim_name.as_str()))
    );
}

/// `docker run --rm [--entrypoint E] IMAGE ARGS…`'s output.
fn run_in(image: &str, entrypoint: Option<&str>, arguments: &[&str]) -> String {
    let mut command = Command::new("docker");
    command.args(["run", "--rm", "--label", "lazaret.test=deploy-image"]);
    if let Some(entrypoint) = entrypoint {
        command.args(["--entrypoint", entrypoint]);
    }
    let output = command.arg(image).args(arguments).output().unwrap();
    assert!(
        output.status.success(),
        "{image} {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_images_build_without_a_registry_and_run() {
    let tag = |component: &str| format!("lazaret-test/{component}:{}", std::process::id());
    for (component, binary) in [
        ("agent", "lazaret-agent"),
        ("controller", "lazaret-controller"),
    ] {
        let image = tag(component);
        let built = Command::new(repo("scripts/image.sh"))
            .args([component, &image])
            .arg(workspace_binary(binary).unwrap())
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let version = run_in(&image, None, &["--version"]);
        assert!(version.starts_with(binary), "{version}");
        if component == "agent" {
            // The two programs the agent runs for the cut.
            assert!(run_in(&image, Some("nft"), &["--version"]).contains("nftables"));
            assert!(run_in(&image, Some("nsenter"), &["--version"]).contains("util-linux"));
        }
        let removed = Command::new("docker")
            .args(["rmi", &image])
            .output()
            .unwrap();
        assert!(removed.status.success());
    }
}
