//! `/.sprite/llm.txt`: a short guide to the sprite for a language model
//! working inside it (what persists, `sprite-env`, checkpoints, services,
//! the URL, the network policy, the in-sprite API). The text is `llm.txt`
//! beside this file, with the sprite's name and URL filled in.
//!
//! The daemon writes it into the sprite's host folder at every start and
//! binds it read-only into the sprite, as it does the network policy: so
//! every sprite, whatever its image and however old, reads the text of the
//! daemon that started it, and nothing inside can change it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the guide is inside every sprite.
pub const PATH_IN_SPRITE: &str = "/.sprite/llm.txt";

const TEMPLATE: &str = include_str!("llm.txt");

/// The guide for sprite `name`, reached at `url`.
pub fn guide(name: &str, url: &str) -> String {
    TEMPLATE.replace("{name}", name).replace("{url}", url)
}

/// Writes the guide into `sprite_dir` (replacing an older one by rename)
/// and answers the file's path, to be bound at [`PATH_IN_SPRITE`].
pub fn write(sprite_dir: &Path, name: &str, url: &str) -> std::io::Result<PathBuf> {
    let path = sprite_dir.join("llm.txt");
    // Readable by every user inside (the file's owner is no one there).
    crate::files::replace_if_changed(&path, guide(name, url).as_bytes(), 0o644)?;
    Ok(path)
}

/// Writes the guide for `name` over the file [`write`] made, in place: a
/// sandbox made ahead has that very file bound (a rename would leave the
/// bind on the old one). Nothing runs in the sandbox yet to read it half
/// written.
pub fn rewrite(sprite_dir: &Path, name: &str, url: &str) -> std::io::Result<()> {
    let path = sprite_dir.join("llm.txt");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(guide(name, url).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guide_names_the_sprite_and_its_url_and_nothing_is_left_to_fill() {
        let g = guide("demo", "http://demo.sprites.localhost:8080");
        assert!(g.contains("sprite named demo"));
        assert!(g.contains("http://demo.sprites.localhost:8080"));
        assert!(g.contains("sprite-env checkpoints create"));
        assert!(!g.contains('{') && !g.contains('}'), "{g}");
    }

    #[test]
    fn rewrite_keeps_the_file_a_bind_holds() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "pooled", "http://pooled").expect("write");
        let before = std::fs::metadata(&path).expect("stat").ino();
        rewrite(dir.path(), "named", "http://named").expect("rewrite");
        assert_eq!(std::fs::metadata(&path).expect("stat").ino(), before);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, guide("named", "http://named"));
    }

    #[test]
    fn write_replaces_the_file_readable_by_all() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a", "http://a").expect("first");
        let path = write(dir.path(), "b", "http://b").expect("second");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("sprite named b"));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
