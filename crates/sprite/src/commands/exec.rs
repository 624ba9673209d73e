//! `sprite exec -- cmd args...`: run a command, streaming stdio both ways;
//! its exit status becomes ours.

use anyhow::{bail, Result};
use bytes::Bytes;
use futures_util::stream;
use sprites_client::{Body, Command, ExecEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{console as console_cmd, cp, sprite_error, Context};
use crate::cli::ExecArgs;
use crate::console;
use crate::terminal;
use crate::transfer;

pub async fn run(ctx: &Context, args: ExecArgs) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let env = split_env(&args.env)?;
    upload_files(&sprite, &args).await?;
    let Some((program, rest)) = args.command.split_first() else {
        bail!("no command given");
    };
    let mut cmd = sprite.command(program.as_str());
    cmd.args(rest.iter().cloned());
    if let Some(dir) = &args.dir {
        cmd.current_dir(dir.as_str());
    }
    if args.tty {
        let size = terminal::size().unwrap_or_default();
        cmd.tty(size.rows, size.cols);
        let explicit: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        cmd.envs(
            terminal::forwarded_env()
                .into_iter()
                .filter(|(k, _)| !explicit.contains(&k.as_str())),
        );
    }
    cmd.envs(env);

    // A terminal on stdin is only read for a TTY command: a plain command
    // would wait for input nobody means to type, so it gets EOF.
    let forward_stdin = args.tty || !terminal::stdin_is_tty();
    if args.http_post {
        return http_exec(&cmd, forward_stdin)
            .await
            .map_err(|e| not_found_as_sprite(e, sprite.name()));
    }
    let child = cmd
        .spawn()
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    console_cmd::finish(sprite.name(), console::run(child, forward_stdin).await?)
}

/// `--file LOCAL:REMOTE`: uploads before the command runs, relative paths
/// in the sprite taken from `--dir` (else the home).
async fn upload_files(sprite: &sprites_client::SpriteHandle, args: &ExecArgs) -> Result<()> {
    if args.files.is_empty() {
        return Ok(());
    }
    let mut fs = sprite.fs();
    if let Some(dir) = &args.dir {
        fs = fs.working_dir(dir);
    }
    for spec in &args.files {
        let (local, remote) = cp::file_spec(spec)?;
        transfer::upload_file(&fs, &local, &remote, None)
            .await
            .map_err(|e| transfer::explain(e, sprite.name()))?;
    }
    Ok(())
}

/// Over `POST …/exec`: stdin streams up as the body, output streams down.
async fn http_exec(cmd: &Command, forward_stdin: bool) -> Result<i32> {
    let body = if forward_stdin {
        Body::wrap_stream(stdin_stream())
    } else {
        Body::from(Vec::new())
    };
    let mut run = cmd.http_spawn(body).await?;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(event) = run.next_event().await {
        match event? {
            ExecEvent::Stdout(data) => {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
            }
            ExecEvent::Stderr(data) => {
                stderr.write_all(&data).await?;
                stderr.flush().await?;
            }
            ExecEvent::Exit(code) => return Ok(code),
            ExecEvent::Text(_) => {}
        }
    }
    bail!("connection closed before exit status")
}

fn stdin_stream() -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    stream::unfold(Some(tokio::io::stdin()), |stdin| async move {
        let mut stdin = stdin?;
        let mut buf = vec![0u8; 32 * 1024];
        match stdin.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(stdin)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn not_found_as_sprite(err: anyhow::Error, name: &str) -> anyhow::Error {
    match err.downcast::<sprites_client::Error>() {
        Ok(api) => sprite_error(api, name),
        Err(other) => other,
    }
}

/// `--env` values: `K=V` pairs, comma separated, the flag repeatable. A
/// piece without `=` continues the previous value, so `A=x,y` sets A to
/// `x,y`.
pub fn split_env(values: &[String]) -> Result<Vec<(String, String)>> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for value in values {
        // Whether a variable of this flag value is open for continuation.
        let mut open = false;
        for piece in value.split(',') {
            match piece.split_once('=') {
                Some((key, val)) if sprites_api::name::is_env_var(key.trim()) => {
                    vars.push((key.trim().to_string(), val.to_string()));
                    open = true;
                }
                _ if open => {
                    if let Some((_, last)) = vars.last_mut() {
                        last.push(',');
                        last.push_str(piece);
                    }
                }
                _ if piece.trim().is_empty() => {}
                _ => bail!("--env {value:?}: {piece:?} is not KEY=VALUE"),
            }
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(values: &[&str]) -> Result<Vec<(String, String)>> {
        split_env(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn splits_on_commas_across_repeated_flags() {
        assert_eq!(
            split(&["A=1,B=2", "C=3"]).expect("ok"),
            pairs(&[("A", "1"), ("B", "2"), ("C", "3")])
        );
    }

    #[test]
    fn values_keep_equals_signs_and_may_be_empty() {
        assert_eq!(
            split(&["URL=http://h/?a=b", "EMPTY="]).expect("ok"),
            pairs(&[("URL", "http://h/?a=b"), ("EMPTY", "")])
        );
    }

    #[test]
    fn a_piece_without_equals_continues_the_value() {
        assert_eq!(
            split(&["PATHS=/a,/b,C=1"]).expect("ok"),
            pairs(&[("PATHS", "/a,/b"), ("C", "1")])
        );
        assert_eq!(split(&["A=x,"]).expect("ok"), pairs(&[("A", "x,")]));
    }

    #[test]
    fn refuses_pieces_that_are_not_assignments() {
        assert!(split(&["novalue"]).is_err());
        assert!(split(&["=x"]).is_err());
        assert!(split(&["1A=x"]).is_err());
        assert!(split(&[""]).expect("empty is nothing").is_empty());
    }
}
