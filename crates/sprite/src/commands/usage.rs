//! `sprite usage [-s NAME] [--since 7d] [--all]` and `sprite tokens ...`.

use anyhow::Result;
use sprites_api::token::{Action, TokenScope};
use sprites_client::{Amounts, Cost, Range};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{sprite_error, table, Context};
use crate::cli::{TokensCommand, UsageArgs};

pub async fn run(ctx: &Context, args: UsageArgs) -> Result<i32> {
    let from = OffsetDateTime::now_utc() - args.since;
    let range = Range {
        from: from.format(&Rfc3339).ok(),
        to: None,
    };
    // A selected sprite (-s or .sprite) alone, unless --all.
    let selected = if args.all {
        None
    } else {
        ctx.sprite_name().ok()
    };
    match selected {
        Some(name) => {
            let sprite = ctx.client()?.sprite(name.clone());
            let report = sprite
                .usage(&range)
                .await
                .map_err(|e| sprite_error(e, &name))?;
            println!("{} from {} to {}", report.sprite, report.from, report.to);
            print!("{}", resource_table(&report.usage, &report.cost));
        }
        None => {
            let report = ctx.client()?.usage(&range).await?;
            let mut rows = Vec::new();
            for day in &report.days {
                for s in &day.sprites {
                    rows.push(row(&day.date, &s.sprite, &s.usage, &s.cost));
                }
            }
            rows.push(row("total", "", &report.usage, &report.cost));
            print!(
                "{}",
                table(
                    &[
                        "DAY",
                        "SPRITE",
                        "CPU-S",
                        "RAM GB-S",
                        "HOT GB-S",
                        "COLD GB-H",
                        "COST USD"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(0)
}

fn row(day: &str, sprite: &str, a: &Amounts, c: &Cost) -> Vec<String> {
    vec![
        day.to_string(),
        sprite.to_string(),
        format!("{:.1}", a.cpu_seconds),
        format!("{:.1}", a.ram_gb_seconds),
        format!("{:.1}", a.hot_storage_gb_seconds),
        format!("{:.3}", a.cold_storage_gb_hours),
        format!("{:.6}", c.total),
    ]
}

fn resource_table(a: &Amounts, c: &Cost) -> String {
    let rows = vec![
        vec![
            "cpu".into(),
            format!("{:.1} CPU-s", a.cpu_seconds),
            format!("{:.6}", c.cpu),
        ],
        vec![
            "ram".into(),
            format!("{:.1} GB-s", a.ram_gb_seconds),
            format!("{:.6}", c.ram),
        ],
        vec![
            "hot storage".into(),
            format!("{:.1} GB-s", a.hot_storage_gb_seconds),
            format!("{:.6}", c.hot_storage),
        ],
        vec![
            "cold storage".into(),
            format!("{:.3} GB-h", a.cold_storage_gb_hours),
            format!("{:.6}", c.cold_storage),
        ],
        vec!["total".into(), String::new(), format!("{:.6}", c.total)],
    ];
    table(&["RESOURCE", "USED", "COST USD"], &rows)
}

pub async fn tokens(ctx: &Context, command: TokensCommand) -> Result<i32> {
    let client = ctx.client()?;
    match command {
        TokensCommand::Create {
            name,
            admin,
            sprite,
            prefix,
            actions,
        } => {
            let actions: Vec<Action> = actions
                .iter()
                .map(|a| match a.as_str() {
                    "read" => Action::Read,
                    "exec" => Action::Exec,
                    _ => Action::Manage,
                })
                .collect();
            let scope = TokenScope {
                admin,
                sprites: (!sprite.is_empty()).then_some(sprite),
                prefix,
                actions: (!actions.is_empty()).then_some(actions),
            };
            let t = client.create_token(name.as_deref(), Some(scope)).await?;
            eprintln!(
                "token {} ({}, {}) created; its secret is shown only now:",
                t.id,
                t.name,
                t.scope.describe()
            );
            println!("{}", t.token);
        }
        TokensCommand::List => {
            let rows: Vec<Vec<String>> = client
                .tokens()
                .await?
                .into_iter()
                .map(|t| vec![t.id, t.name, t.created_at, t.scope.describe()])
                .collect();
            if rows.is_empty() {
                eprintln!("no tokens (besides the admin token)");
            } else {
                print!("{}", table(&["ID", "NAME", "CREATED", "SCOPE"], &rows));
            }
        }
        TokensCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            println!("Revoked token {id}");
        }
    }
    Ok(0)
}
