//! The `needs` graph: a service starts after the services it needs.
//!
//! `put` refuses needs that are unknown or close a cycle, so the graph the
//! API builds is acyclic. Files edited by hand may still hold a cycle or a
//! dangling need: boot then breaks the cycle by name order and says so.

use std::collections::{BTreeMap, BTreeSet};

/// Service name → the names it needs.
pub type Graph = BTreeMap<String, Vec<String>>;

/// Why a set of needs is refused.
pub fn check(name: &str, needs: &[String], graph: &Graph) -> Result<(), String> {
    for need in needs {
        if need == name {
            return Err(format!("service {name:?} cannot need itself"));
        }
        if !graph.contains_key(need) {
            return Err(format!(
                "service {name:?} needs {need:?}, which is not defined"
            ));
        }
    }
    let mut with_new = graph.clone();
    with_new.insert(name.to_string(), needs.to_vec());
    if let Some(path) = cycle_through(name, &with_new) {
        return Err(format!("needs would form a cycle: {}", path.join(" -> ")));
    }
    Ok(())
}

/// A path `name -> ... -> name` along needs, if there is one.
fn cycle_through(name: &str, graph: &Graph) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        target: &str,
        graph: &Graph,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in graph.get(at).map(Vec::as_slice).unwrap_or_default() {
            if next == target {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(next, target, graph, seen, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![name.to_string()];
    let mut seen = BTreeSet::new();
    walk(name, name, graph, &mut seen, &mut path).then_some(path)
}

/// Names in an order where each comes after what it needs (needs outside
/// the graph are ignored), ties by name; a cycle is broken at its smallest
/// name, with a note.
pub fn start_order(graph: &Graph) -> (Vec<String>, Vec<String>) {
    let mut pending: BTreeMap<&str, BTreeSet<&str>> = graph
        .iter()
        .map(|(name, needs)| {
            let known = needs
                .iter()
                .map(String::as_str)
                .filter(|n| graph.contains_key(*n) && *n != name.as_str())
                .collect();
            (name.as_str(), known)
        })
        .collect();
    let mut order = Vec::with_capacity(pending.len());
    let mut notes = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<&str> = pending
            .iter()
            .filter(|(_, needs)| needs.is_empty())
            .map(|(name, _)| *name)
            .collect();
        let next: Vec<&str> = if ready.is_empty() {
            // Only cycles are left: take the smallest name.
            let Some((&name, needs)) = pending.iter().next() else {
                break;
            };
            notes.push(format!(
                "service {name:?} is in a needs cycle (waits for {}): starting it first",
                needs.iter().copied().collect::<Vec<_>>().join(", ")
            ));
            vec![name]
        } else {
            ready
        };
        for name in next {
            pending.remove(name);
            for needs in pending.values_mut() {
                needs.remove(name);
            }
            order.push(name.to_string());
        }
    }
    (order, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges
            .iter()
            .map(|(n, needs)| (n.to_string(), needs.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn unknown_self_and_cyclic_needs_are_refused() {
        let g = graph(&[("db", &[]), ("api", &["db"]), ("web", &["api"])]);
        assert!(check("worker", &["db".into(), "api".into()], &g).is_ok());
        assert!(check("worker", &["cache".into()], &g)
            .unwrap_err()
            .contains("not defined"));
        assert!(check("db", &["db".into()], &g)
            .unwrap_err()
            .contains("itself"));
        let err = check("db", &["web".into()], &g).unwrap_err();
        assert_eq!(err, "needs would form a cycle: db -> web -> api -> db");
        // Replacing a service's needs is judged on the new needs only.
        assert!(check("api", &[], &g).is_ok());
    }

    #[test]
    fn start_order_follows_needs() {
        let g = graph(&[
            ("web", &["api", "cache"]),
            ("api", &["db"]),
            ("db", &[]),
            ("cache", &[]),
            ("lonely", &["gone"]),
        ]);
        let (order, notes) = start_order(&g);
        assert_eq!(order, ["cache", "db", "lonely", "api", "web"]);
        assert!(notes.is_empty());
    }

    #[test]
    fn cycles_from_hand_edited_files_are_broken() {
        let g = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &["a"]), ("d", &[])]);
        let (order, notes) = start_order(&g);
        assert_eq!(order, ["d", "a", "b", "c"]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("\"a\""), "{notes:?}");
    }
}
