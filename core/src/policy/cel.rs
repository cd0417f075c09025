//! CEL expressions in policies: compiled once at load, checked against the variables Lazaret
//! provides, evaluated per container.
//!
//! The only variable is `container`; its fields are [`CONTAINER_FIELDS`] (documented with
//! examples in `docs/policies.md`). An expression that names another variable or field is
//! rejected at load, so a typo never turns into a silent "no match" at run time. Unknown
//! values (the runtime did not report them) are `null`.

use std::collections::{BTreeSet, HashMap};
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

/// Which fields of `container` a set of expressions reads, so that the judge builds only those
/// (building all of them costs more than evaluating most expressions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CelFields {
    /// No expression at all.
    #[default]
    None,
    Only(BTreeSet<&'static str>),
    /// Some expression uses `container` as a whole (e.g. `size(container)`).
    All,
}

impl CelFields {
    fn add(&mut self, field: &'static str) {
        match self {
            CelFields::All => {}
            CelFields::Only(fields) => {
                fields.insert(field);
            }
            CelFields::None => *self = CelFields::Only(BTreeSet::from([field])),
        }
    }

    /// The union of two field sets.
    pub fn merge(&mut self, other: &CelFields) {
        match other {
            CelFields::None => {}
            CelFields::All => *self = CelFields::All,
            CelFields::Only(fields) => {
                for field in fields {
                    self.add(field);
                }
            }
        }
    }

    fn wants(&self, field: &str) -> bool {
        match self {
            CelFields::None => false,
            CelFields::All => true,
            CelFields::Only(fields) => fields.contains(field),
        }
    }
}

/// A compiled, checked CEL expression with its source.
#[derive(Clone)]
pub struct CelExpression {
    source: String,
    program: Arc<Program>,
    fields: CelFields,
    /// The explanation reported when it is true (built once, shared by every finding).
    why_true: Arc<str>,
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
        let mut walk = ReferenceWalk::default();
        walk.visit(program.expression());
        if !walk.problems.is_empty() {
            walk.problems.dedup();
            return Err(format!(
                "CEL expression {source:?}: {}",
                walk.problems.join("; ")
            ));
        }
        Ok(CelExpression {
            source: source.to_string(),
            program: Arc::new(program),
            fields: walk.fields,
            why_true: Arc::from(format!("{source} is true")),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `container` fields this expression reads.
    pub fn fields(&self) -> &CelFields {
        &self.fields
    }

    /// `"<source> is true"`, the explanation of a violation.
    pub fn why_true(&self) -> Arc<str> {
        self.why_true.clone()
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

/// Walks an expression: collects references to unknown variables and `container` fields (the
/// problems), and the fields it reads. Comprehension variables (`m` in
/// `container.mounts.exists(m, m.rw)`) are in scope inside their comprehension.
#[derive(Default)]
struct ReferenceWalk {
    bound: Vec<String>,
    problems: Vec<String>,
    fields: CelFields,
}

impl ReferenceWalk {
    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|variable| variable == name)
    }

    fn visit(&mut self, expression: &IdedExpr) {
        match &expression.expr {
            Expr::Ident(name) => {
                if name == "container" && !self.is_bound(name) {
                    self.fields = CelFields::All;
                    return;
                }
                let known = name.starts_with('@')
                    || self.is_bound(name)
                    || CEL_IDENTIFIERS.contains(&name.as_str());
                if !known {
                    self.problems.push(format!(
                        "unknown variable `{name}`: the only variable is `container`"
                    ));
                }
            }
            Expr::Select(select) => {
                let on_container = matches!(&select.operand.expr, Expr::Ident(name) if name == "container")
                    && !self.is_bound("container");
                if !on_container {
                    self.visit(&select.operand);
                    return;
                }
                match CONTAINER_FIELDS
                    .iter()
                    .find(|field| **field == select.field)
                {
                    Some(field) => self.fields.add(field),
                    None => self.problems.push(format!(
                        "`container` has no field `{}`; its fields are: {}",
                        select.field,
                        CONTAINER_FIELDS.join(", ")
                    )),
                }
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.visit(target);
                }
                for argument in &call.args {
                    self.visit(argument);
                }
            }
            Expr::Comprehension(comprehension) => {
                self.visit(&comprehension.iter_range);
                self.visit(&comprehension.accu_init);
                let scope = self.bound.len();
                self.bound.push(comprehension.iter_var.clone());
                self.bound.extend(comprehension.iter_var2.clone());
                self.bound.push(comprehension.accu_var.clone());
                self.visit(&comprehension.loop_cond);
                self.visit(&comprehension.loop_step);
                self.visit(&comprehension.result);
                self.bound.truncate(scope);
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.visit(element);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.visit_entry(&entry.expr);
                }
            }
            Expr::Struct(structure) => {
                for entry in &structure.entries {
                    self.visit_entry(&entry.expr);
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn visit_entry(&mut self, entry: &EntryExpr) {
        match entry {
            EntryExpr::StructField(field) => self.visit(&field.value),
            EntryExpr::MapEntry(map_entry) => {
                self.visit(&map_entry.key);
                self.visit(&map_entry.value);
            }
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
    /// The CEL view of `container` with the `fields` the expressions read (all of them for
    /// [`CelFields::All`]).
    pub fn new(
        container: &ContainerInfo,
        findings: &[Finding],
        fields: &CelFields,
    ) -> ContainerContext {
        let mut context = Context::with_env(environment().clone());
        let values: Vec<(&'static str, Value)> = CONTAINER_FIELDS
            .iter()
            .filter(|field| fields.wants(field))
            .map(|field| (*field, field_value(field, container, findings)))
            .collect();
        // `container.user` is resolved as a qualified name first: binding each field under its
        // dotted name too makes that first lookup hit, instead of falling back to a map lookup
        // through several candidate names (measured: most of an expression's cost).
        for (field, value) in &values {
            context.add_variable_from_value(format!("container.{field}"), value.clone());
        }
        let map: HashMap<&'static str, Value> = values.into_iter().collect();
        context.add_variable_from_value("container", Value::from(map));
        ContainerContext { context }
    }
}

fn mounts_value(container: &ContainerInfo) -> Value {
    optional(container.mounts.as_ref().map(|mounts| {
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
    }))
}

fn ports_value(container: &ContainerInfo) -> Value {
    optional(container.ports.as_ref().map(|ports| {
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
    }))
}

fn field_value(field: &str, container: &ContainerInfo, findings: &[Finding]) -> Value {
    let namespaces = &container.host_namespaces;
    match field {
        "id" => container.id.as_str().into(),
        "name" => container.name.as_str().into(),
        "runtime" => container.runtime.as_str().into(),
        "namespace" => container.namespace.as_str().into(),
        "state" => container.state.as_str().into(),
        "image" => container.image.as_str().into(),
        "image_id" => container.image_id.as_str().into(),
        "image_digest" => optional(container.image_digest.clone()),
        "labels" => {
            let labels: HashMap<String, String> = container
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            Value::from(labels)
        }
        "user" => optional(container.user.clone()),
        "privileged" => optional(container.privileged),
        "cap_add" => string_list(container.cap_add.as_ref()),
        "cap_drop" => string_list(container.cap_drop.as_ref()),
        "host_network" => optional(namespaces.network),
        "host_pid" => optional(namespaces.pid),
        "host_ipc" => optional(namespaces.ipc),
        "host_uts" => optional(namespaces.uts),
        "host_userns" => optional(namespaces.user),
        "mounts" => mounts_value(container),
        "devices" => optional(container.devices.as_ref().map(|devices| {
            Value::from(
                devices
                    .iter()
                    .map(|device| Value::from(device.host_path.as_str()))
                    .collect::<Vec<Value>>(),
            )
        })),
        "ports" => ports_value(container),
        "read_only_rootfs" => optional(container.read_only_rootfs),
        "no_new_privileges" => optional(container.security.no_new_privileges),
        "seccomp" => optional(
            container
                .security
                .seccomp
                .as_ref()
                .map(|profile| match profile {
                    SeccompProfile::Default => "default".to_string(),
                    SeccompProfile::Unconfined => "unconfined".to_string(),
                    SeccompProfile::Custom(name) => name.clone(),
                }),
        ),
        "health_check" => optional(
            container
                .health_check
                .as_ref()
                .map(|check| matches!(check, HealthCheck::Command(_))),
        ),
        "pod" => optional(container.pod.as_ref().map(|pod| {
            record(vec![
                ("name", pod.name.as_str().into()),
                ("namespace", pod.namespace.as_str().into()),
                ("container_name", pod.container_name.as_str().into()),
                ("sandbox_id", pod.sandbox_id.as_str().into()),
            ])
        })),
        "findings" => {
            let results: HashMap<&'static str, &'static str> = findings
                .iter()
                .map(|finding| (finding.check, finding.result.as_str()))
                .collect();
            Value::from(results)
        }
        _ => Value::Null,
    }
}
