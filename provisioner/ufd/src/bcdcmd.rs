//! `ufd bcd ...`: BCD stores.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};
use ufd_formats::bcd::{
    guid::alias_of, render::value_text, render_enum, ElementFormat, RenderOptions, Store,
};
use ufd_formats::hive::Hive;

use crate::fsutil::read;
use crate::CliError;

#[derive(Subcommand)]
pub enum BcdCmd {
    /// List every object and element, like `bcdedit /store STORE /enum all`.
    Enum {
        store: PathBuf,
        /// JSON: objects with GUID, type and every element with its id, name, format and decoded value.
        #[arg(long)]
        json: bool,
        /// Like bcdedit's /v: raw GUIDs instead of aliases, hidden elements shown.
        #[arg(long = "v")]
        verbose: bool,
    },
}

pub fn run(cmd: BcdCmd) -> Result<u8, CliError> {
    match cmd {
        BcdCmd::Enum {
            store,
            json,
            verbose,
        } => {
            let s = load(&store)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&store_json(&s, verbose))
                        .map_err(|e| CliError::other(e.to_string()))?
                );
            } else {
                print!("{}", render_enum(&s, &RenderOptions { verbose }));
            }
            Ok(0)
        }
    }
}

/// Read a BCD store file (a registry hive).
pub fn load(path: &Path) -> Result<Store, CliError> {
    let data = read(path)?;
    let hive = Hive::parse(&data).map_err(|e| CliError::format(path, e))?;
    Store::from_hive(&hive).map_err(|e| CliError::format(path, e))
}

fn format_name(f: ElementFormat) -> String {
    match f {
        ElementFormat::Device => "device".into(),
        ElementFormat::String => "string".into(),
        ElementFormat::Object => "object".into(),
        ElementFormat::ObjectList => "object-list".into(),
        ElementFormat::Integer => "integer".into(),
        ElementFormat::Boolean => "boolean".into(),
        ElementFormat::IntegerList => "integer-list".into(),
        ElementFormat::Unknown(n) => format!("unknown-{n}"),
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn store_json(s: &Store, verbose: bool) -> Value {
    let opts = RenderOptions { verbose };
    let objects: Vec<Value> = s
        .objects
        .iter()
        .map(|o| {
            let elements: Vec<Value> = o
                .elements
                .iter()
                .map(|e| {
                    let ty = e.element_type;
                    json!({
                        "id": format!("{:#010x}", ty.0),
                        "name": ty.display_name(o.object_type),
                        "format": format_name(ty.format()),
                        "text": value_text(o, ty, &e.value, &opts),
                        "value": serde_json::to_value(&e.value).unwrap_or(Value::Null),
                    })
                })
                .collect();
            json!({
                "id": o.id.to_string(),
                "alias": alias_of(&o.id),
                "type": format!("{:#010x}", o.object_type.0),
                "title": o.title(),
                "description_extra": o.description_extra.iter().map(|v| json!({"name": v.name, "type": v.value_type, "data": hex(&v.data)})).collect::<Vec<_>>(),
                "elements": elements,
            })
        })
        .collect();
    json!({
        "root": s.root_name,
        "description": s.description.iter().map(|v| json!({"name": v.name, "type": v.value_type, "data": hex(&v.data)})).collect::<Vec<_>>(),
        "objects": objects,
    })
}
