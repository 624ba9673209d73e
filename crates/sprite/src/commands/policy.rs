//! `sprite policy show|set|clear`: the sprite's egress policy;
//! `sprite policy privileges show|set|clear`: its capabilities and devices.

use anyhow::Result;
use sprites_client::{
    CapabilityChanges, NetworkPolicy, PolicyAction, PolicyRule, PrivilegesPolicy, SpriteHandle,
};

use super::{sprite_error, table, Context};
use crate::cli::{PolicyCommand, PrivilegesCommand};

pub async fn run(ctx: &Context, command: PolicyCommand) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let policy = match command {
        PolicyCommand::Privileges { command } => return privileges(&sprite, command).await,
        PolicyCommand::Show => {
            let p = sprite
                .network_policy()
                .await
                .map_err(|e| sprite_error(e, sprite.name()))?;
            print!("{}", describe(&p));
            return Ok(0);
        }
        PolicyCommand::Set {
            include_defaults,
            allow,
            deny,
        } => build(include_defaults, &allow, &deny),
        PolicyCommand::Clear => NetworkPolicy::default(),
    };
    sprite
        .set_network_policy(&policy)
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    print!("{}", describe(&policy));
    Ok(0)
}

fn build(include_defaults: bool, allow: &[String], deny: &[String]) -> NetworkPolicy {
    let mut rules = Vec::new();
    if include_defaults {
        rules.push(PolicyRule::include_defaults());
    }
    rules.extend(allow.iter().map(PolicyRule::allow));
    rules.extend(deny.iter().map(PolicyRule::deny));
    NetworkPolicy { rules }
}

fn describe(p: &NetworkPolicy) -> String {
    if p.rules.is_empty() {
        return "no rules: open egress\n".into();
    }
    let rows: Vec<Vec<String>> = p
        .rules
        .iter()
        .map(|r| match (&r.include, &r.domain, r.action) {
            (Some(inc), _, _) => vec!["include".into(), inc.clone()],
            (None, Some(d), Some(PolicyAction::Allow)) => vec!["allow".into(), d.clone()],
            (None, Some(d), Some(PolicyAction::Deny)) => vec!["deny".into(), d.clone()],
            _ => vec!["?".into(), String::new()],
        })
        .collect();
    table(&["RULE", "DOMAIN"], &rows)
}

async fn privileges(sprite: &SpriteHandle, command: PrivilegesCommand) -> Result<i32> {
    let fail = |e| sprite_error(e, sprite.name());
    match command {
        PrivilegesCommand::Show => {
            let p = sprite.privileges_policy().await.map_err(fail)?;
            print!("{}", describe_privileges(&p));
            return Ok(0);
        }
        PrivilegesCommand::Set {
            add,
            drop,
            device,
            profile,
            no_new_privileges,
            io_uring,
        } => {
            let policy = PrivilegesPolicy {
                profile,
                capabilities: CapabilityChanges { add, drop },
                devices: device,
                no_new_privileges,
                io_uring,
            };
            sprite.set_privileges_policy(&policy).await.map_err(fail)?;
        }
        PrivilegesCommand::Clear => sprite.delete_privileges_policy().await.map_err(fail)?,
    }
    // What the server stored (names in their canonical form).
    let stored = sprite.privileges_policy().await.map_err(fail)?;
    print!("{}", describe_privileges(&stored));
    println!(
        "applies at the sprite's next start (POST /v1/sprites/{}/restart, or a wake from cold)",
        sprite.name()
    );
    Ok(0)
}

fn describe_privileges(p: &PrivilegesPolicy) -> String {
    if p.is_default() {
        return "default privileges\n".into();
    }
    let rows: Vec<Vec<String>> = p
        .profile
        .iter()
        .map(|pr| vec!["profile".into(), pr.clone()])
        .chain(
            p.no_new_privileges
                .map(|n| vec!["noNewPrivileges".into(), n.to_string()]),
        )
        .chain(p.io_uring.map(|n| vec!["io_uring".into(), n.to_string()]))
        .chain(
            p.capabilities
                .add
                .iter()
                .map(|c| vec!["add".into(), c.clone()]),
        )
        .chain(
            p.capabilities
                .drop
                .iter()
                .map(|c| vec!["drop".into(), c.clone()]),
        )
        .chain(p.devices.iter().map(|d| vec!["device".into(), d.clone()]))
        .collect();
    table(&["CHANGE", "WHAT"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_rules_in_order() {
        let p = build(true, &["github.com".into()], &["*".into()]);
        assert_eq!(p.rules[0], PolicyRule::include_defaults());
        assert_eq!(p.rules[1], PolicyRule::allow("github.com"));
        assert_eq!(p.rules[2], PolicyRule::deny("*"));
        let text = describe(&p);
        assert!(text.contains("include") && text.contains("github.com") && text.contains("deny"));
        assert_eq!(
            describe(&NetworkPolicy::default()),
            "no rules: open egress\n"
        );
    }
}
