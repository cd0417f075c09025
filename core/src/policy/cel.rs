//! CEL expressions in policies: compiled once at load, checked against the variables Lazaret
//! provides, evaluated per container.
//!
//! The only variable is `container`; its fields are [`CONTAINER_FIELDS`] (documented with
//! examples in `docs/policies.md`). An expression that names another variable or field is
//! rejected at load, so a typo never turns into a silent "no match" at run time. Unknown
//! values (the runtime did not report them) are `null`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, Program, Value};
use serde::{Deserialize, Deserializer};

use crate::container::{ContainerInfo, HealthCheck, SeccompProfile};
use crate::posture::Finding;

/// Fields of the `container` variable.
pub const CONTAINER_FIELDS: &[&str] = &[
    "id",
    "name",
    "runtime",
    "namespace",
    "state",
    "image",
    "image_id",
    "image_digest",
    "labels",
    "user",
    "privileged",
    "cap_add",
    "cap_drop",
    "host_network",
    "host_pid",
    "host_ipc",
    "host_uts",
    "host_userns",
    "mounts",
    "devices",
    "ports",
    "read_only_rootfs",
    "no_new_privileges",
    "seccomp",
    "health_check",
    "pod",
    "findings",
];

/// Type names and constants CEL programs may use as bare identifiers.
const CEL_IDENTIFIERS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

fn environment() -> &'static Arc<Env> {
    static ENVIRONMENT: OnceLock<Arc<Env>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| Arc::new(Env::stdlib()))
}

/// A compiled, checked CEL expression with its source.
#[derive(Clone)]
pub struct CelExpression {
    source: String,
    program: Arc<Program>,
}

impl fmt::Debug for CelExpression {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_tuple("CelExpression")
            .field(&self.source)
            .finish()
    }
}

impl PartialEq for CelExpression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl CelExpression {
    /// Compiles and checks `source`; the error says what to fix.
    pub fn compile(source: &str) -> Result<CelExpression, String> {
        let program = environment().compile(source).map_err(|errors| {
            format!(
                "CEL expression does not compile: {}",
                errors.to_string().replace("<input>", "expr")
            )
        })?;
        let mut problems = Vec::new();
        check_references(program.expression(), &mut Vec::new(), &mut problems);
        if !problems.is_empty() {
            problems.dedup();
            return Err(format!(
                "CEL expression {source:?}: {}",
                problems.join("; ")
            ));
        }
        Ok(CelExpression {
            source: source.to_string(),
            program: Arc::new(program),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against a container context; anything but a boolean result is an error.
    pub fn evaluate(&self, context: &ContainerContext) -> Result<bool, String> {
        match self.program.execute(&context.context) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(format!(
                "expression {:?} gave {other:?}, not true or false",
                self.source
            )),
            Err(error) => Err(format!("expression {:?} failed: {error}", self.source)),
        }
    }
}

impl<'de> Deserialize<'de> for CelExpression {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        CelExpression::compile(&source).map_err(serde::de::Error::custom)
    }
}

/// Walks the expression, collecting references to unknown variables and `container` fields.
/// Comprehension variables (`m` in `container.mounts.exists(m, m.rw)`) are in scope inside
/// their comprehension.
fn check_references(expression: &IdedExpr, bound: &mut Vec<String>, problems: &mut Vec<String>) {
    match &expression.expr {
        Expr::Ident(name) => {
            let known = name.starts_with('@')
                || name == "container"
                || bound.iter().any(|variable| variable == name)
                || CEL_IDENTIFIERS.contains(&name.as_str());
            if !known {
                problems.push(format!(
                    "unknown variable `{name}`: the only variable is `container`"
                ));
            }
        }
        Expr::Select(select) => {
            let on_container = matches!(&select.operand.expr, Expr::Ident(name)
                if name == "container" && !bound.iter().any(|variable| variable == "container"));
            if on_container && !CONTAINER_FIELDS.contains(&select.field.as_str()) {
                problems.push(format!(
                    "`container` has no field `{}`; its fields are: {}",
                    select.field,
                    CONTAINER_FIELDS.join(", ")
                ));
            }
            check_references(&select.operand, bound, problems);
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                check_references(target, bound, problems);
            }
            for argument in &call.args {
                check_references(argument, bound, problems);
            }
        }
        Expr::Comprehension(comprehension) => {
            check_references(&comprehension.iter_range, bound, problems);
            check_references(&comprehension.accu_init, bound, problems);
            let scope = bound.len();
            bound.push(comprehension.iter_var.clone());
            bound.extend(comprehension.iter_var2.clone());
            bound.push(comprehension.accu_var.clone());
            check_references(&comprehension.loop_cond, bound, problems);
            check_references(&comprehension.loop_step, bound, problems);
            check_references(&comprehension.result, bound, problems);
            bound.truncate(scope);
        }
        Expr::List(list) => {
            for element in &list.elements {
                check_references(element, bound, problems);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                check_entry(&entry.expr, bound, problems);
            }
        }
        Expr::Struct(structure) => {
            for entry in &structure.entries {
                check_entry(&entry.expr, bound, problems);
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn check_entry(entry: &EntryExpr, bound: &mut Vec<String>, problems: &mut Vec<String>) {
    match entry {
        EntryExpr::StructField(field) => check_references(&field.value, bound, problems),
        EntryExpr::MapEntry(map_entry) => {
            check_references(&map_entry.key, bound, problems);
            check_references(&map_entry.value, bound, problems);
        }
    }
}

/// The CEL view of one container, built once and shared by every expression judged on it.
pub struct ContainerContext {
    context: Context<'static, 'static>,
}

fn optional<T: Into<Value>>(value: Option<T>) -> Value {
    value.map_or(Value::Null, Into::into)
}

fn string_list(values: Option<&Vec<String>>) -> Value {
    values.map_or(Value::Null, |values| Value::from(values.clone()))
}

fn record(fields: Vec<(&'static str, Value)>) -> Value {
    let map: HashMap<&'static str, Value> = fields.into_iter().collect();
    Value::from(map)
}

impl ContainerContext {
    pub fn new(container: &ContainerInfo, findings: &[Finding]) -> ContainerContext {
        let mut context = Context::with_env(environment().clone());
        context.add_variable_from_value("container", container_value(container, findings));
        ContainerContext { context }
    }
}

/// `container` as a CEL map (see [`CONTAINER_FIELDS`]).
pub fn container_value(container: &ContainerInfo, findings: &[Finding]) -> Value {
    let namespaces = &container.host_namespaces;
    let labels: HashMap<String, String> = container
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let mounts = container.mounts.as_ref().map(|mounts| {
        Value::from(
            mounts
                .iter()
                .map(|mount| {
                    record(vec![
                        ("source", mount.source.as_str().into()),
                        ("destination", mount.destination.as_str().into()),
                        ("rw", mount.read_write.into()),
                        ("kind", mount.kind.as_str().into()),
                        ("propagation", mount.propagation.as_str().into()),
                    ])
                })
                .collect::<Vec<Value>>(),
        )
    });
    let ports = container.ports.as_ref().map(|ports| {
        Value::from(
            ports
                .iter()
                .map(|port| {
                    record(vec![
                        ("container_port", i64::from(port.container_port).into()),
                        ("protocol", port.protocol.as_str().into()),
                        ("host_ip", port.host_ip.as_str().into()),
                        ("host_port", i64::from(port.host_port).into()),
                    ])
                })
                .collect::<Vec<Value>>(),
        )
    });
    let devices = container.devices.as_ref().map(|devices| {
        Value::from(
            devices
                .iter()
                .map(|device| Value::from(device.host_path.as_str()))
                .collect::<Vec<Value>>(),
        )
    });
    let seccomp = container
        .security
        .seccomp
        .as_ref()
        .map(|profile| match profile {
            SeccompProfile::Default => "default".to_string(),
            SeccompProfile::Unconfined => "unconfined".to_string(),
            SeccompProfile::Custom(name) => name.clone(),
        });
    let health_check = container
        .health_check
        .as_ref()
        .map(|check| matches!(check, HealthCheck::Command(_)));
    let pod = container.pod.as_ref().map(|pod| {
        record(vec![
            ("name", pod.name.as_str().into()),
            ("namespace", pod.namespace.as_str().into()),
            ("container_name", pod.container_name.as_str().into()),
            ("sandbox_id", pod.sandbox_id.as_str().into()),
        ])
    });
    let findings: HashMap<&'static str, &'static str> = findings
        .iter()
        .map(|finding| (finding.check, finding.result.as_str()))
        .collect();
    record(vec![
        ("id", container.id.as_str().into()),
        ("name", container.name.as_str().into()),
        ("runtime", container.runtime.as_str().into()),
        ("namespace", container.namespace.as_str().into()),
        ("state", container.state.as_str().into()),
        ("image", container.image.as_str().into()),
        ("image_id", container.image_id.as_str().into()),
        ("image_digest", optional(container.image_digest.clone())),
        ("labels", Value::from(labels)),
        ("user", optional(container.user.clone())),
        ("privileged", optional(container.privileged)),
        ("cap_add", string_list(container.cap_add.as_ref())),
        ("cap_drop", string_list(container.cap_drop.as_ref())),
        ("host_network", optional(namespaces.network)),
        ("host_pid", optional(namespaces.pid)),
        ("host_ipc", optional(namespaces.ipc)),
        ("host_uts", optional(namespaces.uts)),
        ("host_userns", optional(namespaces.user)),
        ("mounts", optional(mounts)),
        ("devices", optional(devices)),
        ("ports", optional(ports)),
        ("read_only_rootfs", optional(container.read_only_rootfs)),
        (
            "no_new_privileges",
            optional(container.security.no_new_privileges),
        ),
        ("seccomp", optional(seccomp)),
        ("health_check", optional(health_check)),
        ("pod", optional(pod)),
        ("findings", Value::from(findings)),
    ])
}
