//! `sprite info`: the details of the selected sprite.

use anyhow::Result;
use sprites_client::Sprite;

use super::{sprite_error, Context};

pub async fn run(ctx: &Context) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let info = sprite
        .get()
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    print!("{}", describe(&info));
    Ok(0)
}

fn describe(s: &Sprite) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("Name", s.name.clone()),
        ("ID", s.id.clone()),
        ("Organization", s.organization.clone()),
        ("Status", s.status.as_str().to_string()),
        ("URL", s.url.clone()),
        (
            "URL auth",
            s.url_settings
                .auth
                .clone()
                .unwrap_or_else(|| "sprite".into()),
        ),
    ];
    if let Some(image) = &s.image {
        fields.push(("Image", image.clone()));
    }
    if let Some(config) = &s.config {
        if let Some(cpus) = config.cpus {
            fields.push(("CPUs", cpus.to_string()));
        }
        if let Some(ram) = config.ram_mb {
            fields.push(("RAM", format!("{ram} MB")));
        }
        if let Some(storage) = config.storage_gb {
            fields.push(("Storage", format!("{storage} GB")));
        }
        if let Some(region) = &config.region {
            fields.push(("Region", region.clone()));
        }
    }
    if !s.labels.is_empty() {
        fields.push(("Labels", s.labels.join(", ")));
    }
    fields.push(("Created", s.created_at.clone()));
    fields.push(("Updated", s.updated_at.clone()));
    if let Some(t) = &s.last_running_at {
        fields.push(("Last running", t.clone()));
    }
    if let Some(t) = &s.last_active_at {
        fields.push(("Last active", t.clone()));
    }
    super::fields(&fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_sprite_field_per_line() {
        let sprite: Sprite = serde_json::from_value(serde_json::json!({
            "id": "0b5", "name": "demo", "organization": "acme", "status": "warm",
            "url": "http://demo.sprites.localhost", "url_settings": {"auth": "public"},
            "labels": ["a", "b"], "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-02T00:00:00Z", "image": "tiny"
        }))
        .expect("sprite");
        let text = describe(&sprite);
        assert!(text.starts_with("Name:         demo\n"), "{text}");
        assert!(text.contains("Status:       warm\n"), "{text}");
        assert!(text.contains("URL auth:     public\n"), "{text}");
        assert!(text.contains("Labels:       a, b\n"), "{text}");
        assert!(!text.contains("Last active"), "{text}");
    }
}
