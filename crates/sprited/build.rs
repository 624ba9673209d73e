//! Assembles the API description served at `/v1/openapi.json` from
//! `docs/api`: `paths.json` (the OpenAPI paths object) and one JSON Schema
//! per wire shape in `schemas/<Name>.json`, which become
//! `components.schemas.<Name>`. A `$ref` to a schema that does not exist
//! fails the build, so the document served is always whole.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Map, Value};

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let api = Path::new(&manifest).join("../../docs/api");
    println!("cargo:rerun-if-changed={}", api.display());

    let mut schemas = Map::new();
    let mut files: Vec<_> = std::fs::read_dir(api.join("schemas"))
        .expect("docs/api/schemas is readable")
        .map(|e| e.expect("docs/api/schemas entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("schema file names are UTF-8")
            .to_string();
        let mut schema = read(&file);
        // The document names the dialect once (`jsonSchemaDialect`).
        if let Some(m) = schema.as_object_mut() {
            m.remove("$schema");
        }
        schemas.insert(name, schema);
    }
    let paths = read(&api.join("paths.json"));

    let doc = json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Sprites API (sprited)",
            "version": std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
            "description": "The Sprites v1 API as sprited serves it. Field types are those the \
                official SDKs declare. NDJSON responses (application/x-ndjson) carry one object \
                of the given schema per line. WebSocket endpoints answer 101; `x-websocket` \
                names the schemas of their JSON text messages."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    });

    let defined: BTreeSet<String> = doc["components"]["schemas"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut missing = BTreeSet::new();
    refs(
        &doc,
        &mut |r| match r.strip_prefix("#/components/schemas/") {
            Some(name) if defined.contains(name) => {}
            _ => {
                missing.insert(r.to_string());
            }
        },
    );
    assert!(
        missing.is_empty(),
        "docs/api: $ref to schemas that do not exist: {missing:?}"
    );

    let text = serde_json::to_string_pretty(&doc).expect("the document serializes");
    std::fs::write(Path::new(&out).join("openapi.json"), text).expect("OUT_DIR is writable");

    console_assets(Path::new(&manifest).join("console"), Path::new(&out));
}

/// `console_assets.rs`: a table of every file under `console/` but its
/// unit tests (`test/`), as `(path, content type, ETag, include_bytes!)`,
/// for `src/console` to serve.
fn console_assets(dir: std::path::PathBuf, out: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for file in files {
        let rel = file
            .strip_prefix(&dir)
            .expect("under console/")
            .to_str()
            .expect("console file names are UTF-8")
            .to_string();
        if rel.starts_with("test/") {
            continue;
        }
        let kind = match file.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js" | "mjs") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("json") => "application/json",
            _ => "text/plain; charset=utf-8",
        };
        let bytes = std::fs::read(&file).expect("console file is readable");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&bytes, &mut h);
        let etag = format!("\"{:016x}\"", std::hash::Hasher::finish(&h));
        table.push_str(&format!(
            "    ({rel:?}, {kind:?}, {etag:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    table.push(']');
    std::fs::write(out.join("console_assets.rs"), table).expect("OUT_DIR is writable");
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, files);
        } else {
            files.push(p);
        }
    }
}

fn read(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn refs(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => f(r),
                    _ => refs(v, f),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, f)),
        _ => {}
    }
}
