//! The MCP tools an agent sees: one per tool name on the market, built from the offers
//! in the node's book, and the management tools.

use std::collections::BTreeMap;
use std::sync::Arc;

use orien_protocol::{Millis, Pricing, Usdc};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::api::OfferView;
use crate::mcp::policy::{BudgetPolicy, call_ceiling, metered_at_most};

/// Argument names the server reads itself on a market tool's call; the rest go to the
/// tool. A tool whose own schema uses one of these names keeps it (and that option is
/// not available on it).
pub(crate) const CONTROL_ARGS: [&str; 5] = ["provider", "max_price", "session", "files", "outputs"];

/// Names of the management tools (a market tool of the same name is not listed).
pub(crate) mod names {
    /// Opens a session the agent keeps across calls.
    pub(crate) const OPEN_SESSION: &str = "orien_open_session";
    /// Closes it.
    pub(crate) const CLOSE_SESSION: &str = "orien_close_session";
    /// Writes a file into a session's workspace.
    pub(crate) const UPLOAD: &str = "orien_upload";
    /// Reads one.
    pub(crate) const DOWNLOAD: &str = "orien_download";
    /// What the agent may still spend, and the wallet.
    pub(crate) const BALANCE: &str = "orien_balance";
    /// The providers the node knows.
    pub(crate) const PROVIDERS: &str = "orien_providers";
    /// Every management tool.
    pub(crate) const ALL: [&str; 6] = [
        OPEN_SESSION,
        CLOSE_SESSION,
        UPLOAD,
        DOWNLOAD,
        BALANCE,
        PROVIDERS,
    ];
}

/// One offer as the catalogue reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MarketOffer {
    /// The offer as the API shows it.
    pub(crate) view: OfferView,
    /// Its prices.
    pub(crate) pricing: Pricing,
    /// The most one call is metered.
    pub(crate) metered: Millis,
}

impl MarketOffer {
    /// An offer from its view; `None` when its amounts do not read back (never for the
    /// node's own views).
    pub(crate) fn new(view: OfferView) -> Option<Self> {
        let pricing = Pricing {
            session_per_minute: view.pricing.session_per_minute.parse().ok()?,
            exec_per_minute: view.pricing.exec_per_minute.parse().ok()?,
            artefact_per_gib: view.pricing.artefact_per_gib.parse().ok()?,
        };
        let metered = metered_at_most(Millis(view.limits.max_exec_ms));
        Some(Self {
            view,
            pricing,
            metered,
        })
    }

    /// The most one call costs, in a session of its own (whose budget must also cover
    /// the artefacts its workspace can hold) or in one already open.
    pub(crate) fn ceiling(&self, own_session: bool) -> Usdc {
        let workspace = own_session.then_some(self.view.limits.workspace_bytes);
        call_ceiling(&self.pricing, self.metered, workspace)
    }
}

/// The tools on the market at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Catalogue {
    /// Each market tool's offers, cheapest execution first.
    market: BTreeMap<String, Vec<MarketOffer>>,
    /// What `tools/list` answers for them.
    tools: Vec<Tool>,
}

impl Catalogue {
    /// The catalogue of these offers.
    pub(crate) fn new(offers: Vec<OfferView>, policy: &BudgetPolicy) -> Self {
        let mut market: BTreeMap<String, Vec<MarketOffer>> = BTreeMap::new();
        for offer in offers.into_iter().filter_map(MarketOffer::new) {
            if names::ALL.contains(&offer.view.tool.as_str()) {
                continue;
            }
            market
                .entry(offer.view.tool.clone())
                .or_default()
                .push(offer);
        }
        for offers in market.values_mut() {
            offers.sort_by(|a, b| {
                (
                    a.pricing.exec_per_minute,
                    a.pricing.session_per_minute,
                    &a.view.id,
                )
                    .cmp(&(
                        b.pricing.exec_per_minute,
                        b.pricing.session_per_minute,
                        &b.view.id,
                    ))
            });
        }
        let tools = market
            .iter()
            .map(|(name, offers)| market_tool(name, offers, policy))
            .collect();
        Self { market, tools }
    }

    /// The market tools, for `tools/list`.
    pub(crate) fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The offers of a market tool, cheapest first (`None`: no such tool on the market).
    pub(crate) fn offers(&self, tool: &str) -> Option<&[MarketOffer]> {
        self.market.get(tool).map(Vec::as_slice)
    }
}

/// The MCP tool of a market tool: the cheapest offer's argument schema with the
/// server's own options added, its description with prices and limits.
fn market_tool(name: &str, offers: &[MarketOffer], policy: &BudgetPolicy) -> Tool {
    let cheapest = &offers[0];
    let mut schema = match &cheapest.view.args_schema {
        Value::Object(schema) => schema.clone(),
        _ => JsonObject::new(),
    };
    schema.insert("type".into(), json!("object"));
    let properties = schema
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut properties = properties;
    for (option, spec) in control_properties() {
        properties.entry(option).or_insert(spec);
    }
    schema.insert("properties".into(), Value::Object(properties));

    let providers = {
        let mut ids: Vec<&str> = offers.iter().map(|o| o.view.provider.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    let limits = &cheapest.view.limits;
    let description = format!(
        "{}\n\nRuns on the ORIEN market, paid in USDC from this node: {providers} provider(s), \
         cheapest {} USDC per minute of execution and {} per minute of session; a call runs at \
         most {} ms with {} MiB of memory and {} KiB of output per stream. A call costs at most \
         {} USDC in a session of its own (this node allows {} per call). Without `session`, the \
         call opens a session, runs and closes it; pass a handle from `{}` to keep a workspace \
         across calls.",
        cheapest.view.description.trim(),
        cheapest.view.pricing.exec_per_minute,
        cheapest.view.pricing.session_per_minute,
        limits.max_exec_ms,
        limits.memory_bytes / (1024 * 1024),
        limits.output_bytes / 1024,
        cheapest.ceiling(true).decimal(),
        policy.per_call.decimal(),
        names::OPEN_SESSION,
    );
    let mut tool = Tool::new(name.to_owned(), description, Arc::new(schema));
    tool.title = Some(format!("{name} (ORIEN market)"));
    tool.output_schema = Some(Arc::new(call_output_schema()));
    tool.annotations = Some(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(false)
            .idempotent(false)
            .open_world(true),
    );
    tool
}

/// The options every market tool takes besides its own arguments.
fn control_properties() -> [(String, Value); 5] {
    [
        (
            "provider".into(),
            json!({"type": "string", "description": "Peer id of the provider to run on (default: the cheapest that fits the budget policy)."}),
        ),
        (
            "max_price".into(),
            json!({"type": "string", "pattern": "^[0-9]{1,13}(\\.[0-9]{1,6})?$", "description": "Most USDC per minute of execution to pay, e.g. \"0.05\"."}),
        ),
        (
            "session".into(),
            json!({"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "A session handle from orien_open_session: the call runs in its workspace (default: a session opened for this call and closed after it)."}),
        ),
        (
            "files".into(),
            json!({
                "type": "array",
                "maxItems": 16,
                "description": "Files written into the workspace before the call: inline (at most 512 KiB each) or linked to a resource of this server (a file of another open session, orien://sessions/{id}/files/{path}, a call's whole output, orien://executions/{id}/stdout, or a file a call left, orien://executions/{id}/artefacts/{path}).",
                "items": {
                    "type": "object",
                    "required": ["path"],
                    "properties": {
                        "path": {"type": "string", "description": "Workspace-relative path."},
                        "text": {"type": "string", "description": "The content as text."},
                        "base64": {"type": "string", "description": "The content, base64."},
                        "uri": {"type": "string", "pattern": "^orien://", "description": "A resource link: the content of this orien:// resource."}
                    },
                    "additionalProperties": false
                }
            }),
        ),
        (
            "outputs".into(),
            json!({
                "type": "array",
                "maxItems": 16,
                "items": {"type": "string", "description": "Workspace-relative path."},
                "description": "Workspace paths the call leaves files at: the provider keeps a copy of each when the call ends and its signed result names the copy's SHA-256 (`artefacts`); read one as orien://executions/{id}/artefacts/{path}, also after the call's session closed, for as long as the provider keeps artefacts."
            }),
        ),
    ]
}

/// The structured result of a market tool's call.
fn call_output_schema() -> JsonObject {
    let schema = json!({
        "type": "object",
        "required": ["provider", "session", "exec", "state", "stdout", "stderr"],
        "properties": {
            "provider": {"type": "string", "description": "The provider's peer id."},
            "session": {"type": "string", "description": "The session the call ran in."},
            "exec": {"type": "string", "description": "The execution id."},
            "state": {"type": "string", "enum": ["completed", "failed"]},
            "failure": {"type": ["string", "null"]},
            "exit_code": {"type": ["integer", "null"]},
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "stdout_truncated": {"type": "boolean"},
            "cost": {"type": ["string", "null"], "description": "The call's execution cost, USDC."},
            "session_cost": {"type": ["string", "null"], "description": "What the session opened for this call cost in all (session time included), USDC."},
            "wall_ms": {"type": ["integer", "null"]},
            "signed_result": {"type": ["string", "null"], "description": "The provider's signed result (hex); check with `orien-node result verify`."},
            "signed_result_sha256": {"type": ["string", "null"]},
            "artefacts": {
                "type": "array",
                "description": "What the provider kept of each path of `outputs`, from its signed result; read a kept one at its `uri`.",
                "items": {
                    "type": "object",
                    "required": ["path", "state"],
                    "properties": {
                        "path": {"type": "string"},
                        "state": {"type": "string", "enum": ["kept", "missing", "not_a_file", "no_room", "failed"]},
                        "size": {"type": ["integer", "null"]},
                        "sha256": {"type": ["string", "null"]},
                        "uri": {"type": ["string", "null"]}
                    }
                }
            }
        }
    });
    match schema {
        Value::Object(schema) => schema,
        _ => JsonObject::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LimitsView, PricingView};

    fn offer(tool: &str, provider: &str, exec: &str, schema: Value) -> OfferView {
        OfferView {
            id: format!("{tool}-{provider}"),
            provider: provider.into(),
            tool: tool.into(),
            version: "1".into(),
            description: format!("the {tool} tool"),
            image_digest: "sha256:00".into(),
            args_schema: schema,
            pricing: PricingView {
                session_per_minute: "0.01".into(),
                exec_per_minute: exec.into(),
                artefact_per_gib: "0.000000".into(),
            },
            limits: LimitsView {
                max_exec_ms: 29_000,
                cpu_millis: 1000,
                memory_bytes: 256 << 20,
                pids: 64,
                output_bytes: 1 << 20,
                workspace_bytes: 64 << 20,
                concurrent_execs: 1,
            },
            payout: "0x00".into(),
            issued_at: 0,
            expires_at: 1,
            keep_artefacts_ms: 0,
        }
    }

    #[test]
    fn one_tool_per_name_with_the_cheapest_offers_schema_and_the_options_added() {
        let schema = json!({"type": "object", "required": ["file"], "properties": {"file": {"type": "string"}}, "additionalProperties": false});
        let catalogue = Catalogue::new(
            vec![
                offer("wc", "b", "0.2", json!({"type": "object"})),
                offer("wc", "a", "0.1", schema),
                offer("sha256", "a", "0.1", json!({})),
            ],
            &BudgetPolicy::default(),
        );
        let names: Vec<&str> = catalogue.tools().iter().map(|t| &*t.name).collect();
        assert_eq!(names, ["sha256", "wc"]);
        let wc = &catalogue.tools()[1];
        assert_eq!(wc.input_schema["required"], json!(["file"]));
        for option in CONTROL_ARGS {
            assert!(
                wc.input_schema["properties"].get(option).is_some(),
                "{option}"
            );
        }
        assert!(wc.input_schema["properties"].get("file").is_some());
        let description = wc.description.as_deref().unwrap_or_default();
        assert!(description.contains("2 provider(s)"), "{description}");
        assert!(description.contains("cheapest 0.1 USDC"), "{description}");
        // 30 s metered at 0.1 + 0.01 per minute.
        assert!(
            description.contains("at most 0.055000 USDC"),
            "{description}"
        );
        let offers = catalogue.offers("wc").unwrap();
        assert_eq!(offers[0].view.provider, "a");
        assert_eq!(offers[0].ceiling(false), Usdc::from_micros(50_000));
    }

    #[test]
    fn a_tools_own_argument_keeps_its_name_and_management_names_are_not_shadowed() {
        let schema = json!({"type": "object", "properties": {"session": {"type": "integer"}}});
        let catalogue = Catalogue::new(
            vec![
                offer("grep", "a", "0.1", schema),
                offer(names::BALANCE, "a", "0.1", json!({})),
            ],
            &BudgetPolicy::default(),
        );
        assert_eq!(catalogue.tools().len(), 1);
        assert_eq!(
            catalogue.tools()[0].input_schema["properties"]["session"],
            json!({"type": "integer"})
        );
        assert!(catalogue.offers(names::BALANCE).is_none());
    }
}
