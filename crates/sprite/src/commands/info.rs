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

/// `sprite evict`: the sprite leaves local disk for the object store.
pub async fn evict(ctx: &Context) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let r = sprite
        .evict()
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    println!(
        "{} is in object storage: {} chunks ({}) sent, {} stored, {} checkpoint(s) uploaded, in {:.0} ms",
        sprite.name(),
        r.chunks_sent,
        bytes(r.bytes_sent),
        bytes(r.stored_bytes),
        r.checkpoints_uploaded,
        r.elapsed_ms
    );
    Ok(0)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
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
    if let Some(host) = &s.host {
        fields.push(("Host", host.clone()));
    }
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
        if let Some(isolation) = &config.isolation {
            fields.push(("Isolation", isolation.clone()));
        }
    }
    if let Some(st) = &s.storage {
        let place = match st.location.as_str() {
            "object" => "object storage (evicted; wakes on the next request)".to_string(),
            "local+object" => "local disk; checkpoints also in object storage".to_string(),
            "filling" => "object storage, arriving on local disk as it is used".to_string(),
            _ => "local disk".to_string(),
        };
        fields.push(("Data", place));
        fields.push(("Local disk", bytes(st.local_bytes)));
        fields.push((
            "Object store",
            format!("{} in {}", bytes(st.object_bytes), st.object_store),
        ));
        if let Some(d) = st.volume_data_bytes {
            fields.push(("Volume data", bytes(d)));
        }
        fields.push((
            "Checkpoints",
            format!(
                "{} local, {} in object storage",
                st.checkpoints_local, st.checkpoints_in_object_store
            ),
        ));
        if let Some(t) = &st.evicted_at {
            fields.push(("Evicted", t.clone()));
        }
        let replicated = match (&st.replicated_at, &st.replication_error) {
            (_, Some(e)) => Some(format!(
                "behind by {}s, failing: {e}",
                st.replication_lag_seconds
            )),
            (Some(t), None) if st.replication_lag_seconds > 0 => Some(format!(
                "{t} (changes since, {}s behind)",
                st.replication_lag_seconds
            )),
            (Some(t), None) => Some(format!("{t} (up to date)")),
            (None, None) => None,
        };
        if let Some(r) = replicated {
            fields.push(("Replicated", r));
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
        assert!(
            !text.contains("Data:"),
            "no storage, no storage lines: {text}"
        );
        assert!(text.contains("Labels:       a, b\n"), "{text}");
        assert!(!text.contains("Last active"), "{text}");
        assert!(!text.contains("Host:"), "{text}");
        let mut on = sprite.clone();
        on.host = Some("host-b".into());
        assert!(describe(&on).contains("Host:         host-b\n"));
    }
}
