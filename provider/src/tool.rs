//! A whitelisted tool: its compiled argument schema and argv template.
//!
//! Arguments never reach a shell. They are validated against the tool's JSON Schema,
//! then each template element that is exactly `{name}` is replaced, whole, by the
//! argument's value. Two extra rules hold on top of the schema:
//!
//! * a value that starts with `-` is refused unless its schema property says
//!   `"x-orien-allow-dash": true`, so no argument can be read as an option;
//! * a string property with `"format": "workspace-path"` must be a
//!   [`WorkspacePath`] and is passed as `/workspace/<normalised path>`.

use std::collections::BTreeMap;

use orien_protocol::offer::{MAX_DESCRIPTION_LEN, MAX_SCHEMA_LEN, MAX_VERSION_LEN};
use orien_protocol::{ImageDigest, Pricing, ResourceLimits, ToolName};
use serde_json::Value;

use crate::config::{ByteSize, ToolConfig, WorkspaceOn};
use crate::workspace_path::WorkspacePath;

/// The schema keyword that lets a property's value start with `-`.
pub const ALLOW_DASH_KEYWORD: &str = "x-orien-allow-dash";
/// The `format` of string properties that name a file in the workspace.
pub const WORKSPACE_PATH_FORMAT: &str = "workspace-path";
/// Largest accepted argument document, in bytes of JSON.
pub const MAX_ARGS_JSON: usize = 64 * 1024;

/// Why a tool definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The schema is not acceptable.
    #[error("{0}")]
    Schema(String),
    /// The argv template is not acceptable.
    #[error("{0}")]
    Template(String),
    /// The idle command is not acceptable.
    #[error("{0}")]
    IdleCommand(String),
    /// Another field is not acceptable.
    #[error("{key}: {message}")]
    Field {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Why arguments were refused; the text goes back to the caller as
/// `ExecOutcome::InvalidArguments`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidArguments(pub String);

/// One element of an argv template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Literal(String),
    Argument(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PropertyRules {
    allow_dash: bool,
    workspace_path: bool,
}

/// A whitelisted tool, checked and ready to turn JSON arguments into an argv.
#[derive(Debug)]
pub struct Tool {
    name: ToolName,
    description: String,
    version: String,
    image: String,
    image_digest: Option<ImageDigest>,
    schema_json: Value,
    validator: jsonschema::Validator,
    template: Vec<Slot>,
    properties: BTreeMap<String, PropertyRules>,
    idle_command: Vec<String>,
    limits: ResourceLimits,
    open_files: u32,
    upload_bytes: u64,
    workspace_on: WorkspaceOn,
    pricing: Pricing,
}

fn validator_for(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .should_validate_formats(true)
        .with_format(WORKSPACE_PATH_FORMAT, |s: &str| {
            WorkspacePath::new(s).is_ok()
        })
        .build(schema)
        .map_err(|e| format!("does not compile: {e}"))
}

impl Tool {
    /// Checks a tool definition. `limits` are the already range-checked limits.
    pub fn new(
        name: ToolName,
        config: &ToolConfig,
        limits: ResourceLimits,
    ) -> Result<Self, ToolError> {
        let field = |key, message: &str| ToolError::Field {
            key,
            message: message.to_owned(),
        };
        if config.description.trim().is_empty() || config.description.len() > MAX_DESCRIPTION_LEN {
            return Err(field("description", "must be 1..=1024 bytes and not blank"));
        }
        if config.version.trim().is_empty() || config.version.len() > MAX_VERSION_LEN {
            return Err(field("version", "must be 1..=64 bytes and not blank"));
        }
        if config.image.is_empty() || config.image.chars().any(|c| c.is_whitespace()) {
            return Err(field(
                "image",
                "must be an image reference such as `orien/busybox:1`",
            ));
        }
        let schema_json = config.schema.to_json().map_err(ToolError::Schema)?;
        let schema_len = schema_json.to_string().len();
        if schema_len > MAX_SCHEMA_LEN {
            return Err(ToolError::Schema(format!(
                "{schema_len} bytes of JSON, more than an offer carries ({MAX_SCHEMA_LEN})"
            )));
        }
        let properties = property_rules(&schema_json)?;
        let validator = validator_for(&schema_json).map_err(ToolError::Schema)?;
        let template = parse_template(&config.argv, &properties)?;
        if config.idle_command.is_empty() || config.idle_command.iter().any(|a| a.contains('\0')) {
            return Err(ToolError::IdleCommand(
                "must be a non-empty argv without NUL bytes".to_owned(),
            ));
        }
        let upload_bytes = config
            .limits
            .upload
            .unwrap_or(ByteSize(limits.workspace_bytes))
            .bytes();
        Ok(Self {
            name,
            description: config.description.clone(),
            version: config.version.clone(),
            image: config.image.clone(),
            image_digest: config.image_digest,
            schema_json,
            validator,
            template,
            properties,
            idle_command: config.idle_command.clone(),
            limits,
            open_files: config.limits.open_files,
            upload_bytes,
            workspace_on: config.limits.workspace_on,
            pricing: config.pricing.to_protocol(),
        })
    }

    /// The tool's name.
    pub fn name(&self) -> &ToolName {
        &self.name
    }
    /// What it does.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Its version text.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// The image reference it runs in.
    pub fn image(&self) -> &str {
        &self.image
    }
    /// The image id the config pins, if any.
    pub fn pinned_digest(&self) -> Option<ImageDigest> {
        self.image_digest
    }
    /// The argument schema as JSON text, for the tool's `Offer`.
    pub fn schema_text(&self) -> String {
        self.schema_json.to_string()
    }
    /// The command that keeps a session container alive.
    pub fn idle_command(&self) -> &[String] {
        &self.idle_command
    }
    /// Limits of every call, as advertised.
    pub fn limits(&self) -> &ResourceLimits {
        &self.limits
    }
    /// `RLIMIT_NOFILE` of the tool's processes.
    pub fn open_files(&self) -> u32 {
        self.open_files
    }
    /// Largest single file an upload may carry.
    pub fn upload_bytes(&self) -> u64 {
        self.upload_bytes
    }
    /// Where the tool's `/workspace` lives.
    pub fn workspace_on(&self) -> WorkspaceOn {
        self.workspace_on
    }
    /// Prices, as advertised.
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The (unsigned) offer of this tool by `provider`, for its image `image_digest`,
    /// paid to `payout`, valid for `ttl` from `issued_at`. It keeps no artefacts after a
    /// session: how long they are kept is the node's to say
    /// ([`Offer::keep_artefacts`](orien_protocol::Offer::keep_artefacts)).
    pub fn offer(
        &self,
        provider: orien_protocol::NodeId,
        image_digest: ImageDigest,
        payout: orien_protocol::EvmAddress,
        issued_at: orien_protocol::Timestamp,
        ttl: orien_protocol::Millis,
    ) -> orien_protocol::Offer {
        orien_protocol::Offer {
            provider,
            tool: self.name.clone(),
            version: self.version.clone(),
            description: self.description.clone(),
            image_digest,
            args_schema: self.schema_text(),
            pricing: self.pricing,
            limits: self.limits,
            payout,
            issued_at,
            expires_at: issued_at.saturating_add(ttl),
            keep_artefacts: orien_protocol::Millis::ZERO,
        }
    }

    /// Validates `args` against the schema and renders the argv.
    pub fn render_argv(&self, args: &Value) -> Result<Vec<String>, InvalidArguments> {
        let size = serde_json::to_vec(args)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_ARGS_JSON {
            return Err(InvalidArguments(format!(
                "arguments are {size} bytes of JSON, at most {MAX_ARGS_JSON}"
            )));
        }
        if let Some(error) = self.validator.iter_errors(args).next() {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            return Err(InvalidArguments(format!("{at}: {error}")));
        }
        let object = args
            .as_object()
            .ok_or_else(|| InvalidArguments("arguments must be a JSON object".to_owned()))?;
        let mut argv = Vec::with_capacity(self.template.len());
        for slot in &self.template {
            match slot {
                Slot::Literal(text) => argv.push(text.clone()),
                Slot::Argument(name) => {
                    let Some(value) = object.get(name) else {
                        continue;
                    };
                    let rules = self.properties.get(name).copied().unwrap_or(PropertyRules {
                        allow_dash: false,
                        workspace_path: false,
                    });
                    argv.push(render_value(name, value, rules)?);
                }
            }
        }
        Ok(argv)
    }
}

fn render_value(
    name: &str,
    value: &Value,
    rules: PropertyRules,
) -> Result<String, InvalidArguments> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => {
            return Err(InvalidArguments(format!(
                "/{name}: only strings, numbers and booleans fill argv slots"
            )));
        }
    };
    if text.contains('\0') {
        return Err(InvalidArguments(format!("/{name}: contains a NUL byte")));
    }
    if rules.workspace_path {
        let path =
            WorkspacePath::new(&text).map_err(|e| InvalidArguments(format!("/{name}: {e}")))?;
        return Ok(path.in_container());
    }
    if text.starts_with('-') && !rules.allow_dash {
        return Err(InvalidArguments(format!(
            "/{name}: a value starting with `-` could be read as an option and is refused \
             (the tool's schema does not set `{ALLOW_DASH_KEYWORD}`)"
        )));
    }
    Ok(text)
}

/// Reads the top-level rules every schema must follow and the per-property extras.
fn property_rules(schema: &Value) -> Result<BTreeMap<String, PropertyRules>, ToolError> {
    let bad = |m: &str| ToolError::Schema(m.to_owned());
    let root = schema
        .as_object()
        .ok_or_else(|| bad("must be a JSON object"))?;
    if root.get("type") != Some(&Value::String("object".to_owned())) {
        return Err(bad("the top level must have \"type\": \"object\""));
    }
    if root.get("additionalProperties") != Some(&Value::Bool(false)) {
        return Err(bad(
            "the top level must have \"additionalProperties\": false, so unknown arguments are refused",
        ));
    }
    let props = match root.get("properties") {
        None => return Ok(BTreeMap::new()),
        Some(Value::Object(props)) => props,
        Some(_) => return Err(bad("\"properties\" must be an object")),
    };
    let mut rules = BTreeMap::new();
    for (name, prop) in props {
        let prop = prop
            .as_object()
            .ok_or_else(|| ToolError::Schema(format!("property `{name}` must be an object")))?;
        let allow_dash = match prop.get(ALLOW_DASH_KEYWORD) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ToolError::Schema(format!(
                    "property `{name}`: `{ALLOW_DASH_KEYWORD}` must be a boolean"
                )));
            }
        };
        let workspace_path =
            prop.get("format") == Some(&Value::String(WORKSPACE_PATH_FORMAT.to_owned()));
        if workspace_path && prop.get("type") != Some(&Value::String("string".to_owned())) {
            return Err(ToolError::Schema(format!(
                "property `{name}`: format `{WORKSPACE_PATH_FORMAT}` needs \"type\": \"string\""
            )));
        }
        rules.insert(
            name.clone(),
            PropertyRules {
                allow_dash,
                workspace_path,
            },
        );
    }
    Ok(rules)
}

fn parse_template(
    argv: &[String],
    properties: &BTreeMap<String, PropertyRules>,
) -> Result<Vec<Slot>, ToolError> {
    if argv.is_empty() {
        return Err(ToolError::Template(
            "must name at least the program".to_owned(),
        ));
    }
    let mut slots = Vec::with_capacity(argv.len());
    for (i, element) in argv.iter().enumerate() {
        if element.contains('\0') {
            return Err(ToolError::Template(format!(
                "element {i} contains a NUL byte"
            )));
        }
        let placeholder = element
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .filter(|name| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        match placeholder {
            Some(_) if i == 0 => {
                return Err(ToolError::Template(
                    "the program (element 0) must be a literal, not an argument".to_owned(),
                ));
            }
            Some(name) if !properties.contains_key(name) => {
                return Err(ToolError::Template(format!(
                    "`{{{name}}}` is not a property of the schema"
                )));
            }
            Some(name) => slots.push(Slot::Argument(name.to_owned())),
            None if element.contains('{') || element.contains('}') => {
                return Err(ToolError::Template(format!(
                    "element {i} `{element}`: placeholders must fill a whole element (`{{name}}`); \
                     no concatenation"
                )));
            }
            None => slots.push(Slot::Literal(element.clone())),
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;
    use serde_json::json;
    use std::path::Path;

    const CONFIG: &str = r#"
[tools.grep]
description = "grep"
version = "1"
image = "orien/busybox:1"
argv = ["grep", "-c", "-e", "{pattern}", "--", "{file}", "{extra}"]
schema = '''{"type": "object", "additionalProperties": false, "required": ["pattern", "file"],
  "properties": {
    "pattern": {"type": "string", "maxLength": 100, "x-orien-allow-dash": true},
    "file": {"type": "string", "format": "workspace-path"},
    "extra": {"type": "string", "maxLength": 10}
  }}'''
[tools.grep.limits]
max_exec_ms = 1000
cpus = 0.5
memory = "32MiB"
pids = 8
tmpfs = "1MiB"
output = "1KiB"
workspace = "1MiB"
concurrent_execs = 1
[tools.grep.pricing]
session_per_minute = "0.001"
exec_per_minute = "0.01"
"#;

    fn tool() -> Tool {
        let (_, mut tools) = ProviderConfig::parse(CONFIG, Path::new("t.toml")).unwrap();
        tools.remove(0)
    }

    #[test]
    fn arguments_fill_whole_slots() {
        let argv = tool()
            .render_argv(&json!({"pattern": "; rm -rf / $(id)", "file": "./a//b.txt"}))
            .unwrap();
        assert_eq!(
            argv,
            [
                "grep",
                "-c",
                "-e",
                "; rm -rf / $(id)",
                "--",
                "/workspace/a/b.txt"
            ]
        );
    }

    #[test]
    fn leading_dash_needs_the_schema_keyword() {
        let t = tool();
        assert!(
            t.render_argv(&json!({"pattern": "-v", "file": "a"}))
                .is_ok()
        );
        let err = t
            .render_argv(&json!({"pattern": "x", "file": "a", "extra": "--help"}))
            .unwrap_err();
        assert!(err.0.contains("option"), "{err}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let t = tool();
        for bad in [
            json!({"pattern": "x", "file": "../etc/passwd"}),
            json!({"pattern": "x", "file": "/etc/passwd"}),
            json!({"pattern": "x"}),
            json!({"pattern": "x", "file": "a", "other": 1}),
            json!({"pattern": 5, "file": "a"}),
            json!(["x"]),
        ] {
            assert!(t.render_argv(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_templates_and_schemas_name_the_key() {
        let cases = [
            (
                r#"argv = ["grep", "-c", "-e", "{pattern}", "--", "{file}", "{extra}"]"#,
                r#"argv = ["grep", "--file={file}"]"#,
                "argv",
            ),
            (
                r#"argv = ["grep", "-c", "-e", "{pattern}", "--", "{file}", "{extra}"]"#,
                r#"argv = ["grep", "{nope}"]"#,
                "argv",
            ),
            (
                r#""required": ["pattern", "file"],"#,
                r#""additionalProperties": true, "required": [],"#,
                "schema",
            ),
            ("cpus = 0.5", "cpus = 500.0", "limits.cpus"),
            ("cpus = 0.5", "cpus = 0.5\nswap = 1", "tools.grep.limits"),
        ];
        for (from, to, key) in cases {
            let text = CONFIG.replacen(from, to, 1);
            let err = ProviderConfig::parse(&text, Path::new("p.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("p.toml: "), "{err}");
            assert!(err.contains(key), "{key} missing in: {err}");
            if key.starts_with("limits") || key == "argv" || key == "schema" {
                assert!(err.contains("tool `grep`"), "{err}");
            }
        }
    }
}
