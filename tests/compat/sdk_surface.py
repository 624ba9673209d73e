"""Every public call of the installed sprites-py, and where each is held.

`public_names()` reads the package itself: each public class's public
methods and properties (inherited ones under the class that offers them)
and each public module's public functions, as `module.Class.member` or
`module.function`. The suite's check (test_sprites_py_surface.py) fails
when that set and the two sets below disagree, in either direction, so a
new SDK release cannot add a call that nothing here tests. `record()`
wraps every one of those names so the suite can also prove, at its end,
that it called each name it claims (conftest.py).
"""

import functools
import importlib
import inspect
import pkgutil

# Calls whose server side is another change's: tested in that file.
# `create_token` posts to https://api.sprites.dev/v1/organizations/{org}/tokens
# whatever base_url says, so its test must route that request to loopback.
ELSEWHERE = {
    "client.SpritesClient.create_token": "test_sprites_py_tokens.py",
    "async_client.AsyncSpritesClient.create_token": "test_sprites_py_tokens.py",
}

# The pathlib-like methods SpritePath and AsyncSpritePath both have.
_PATH_METHODS = (
    "chmod", "copy_to", "exists", "is_absolute", "is_dir", "is_file",
    "is_relative_to", "iterdir", "joinpath", "listdir", "mkdir", "name",
    "parent", "parents", "parts", "read_bytes", "read_text", "relative_to",
    "rename", "replace", "rmdir", "rmtree", "stat", "stem", "suffix",
    "suffixes", "touch", "unlink", "with_name", "with_stem", "with_suffix",
    "write_bytes", "write_text",
)

# Every other public call: each is called, and what it returns checked, by
# test_sprites_py.py, test_sprites_py_fs.py, test_sprites_py_sweep.py,
# test_sprites_py_async.py or test_sprites_py_control.py.
TESTED = {
    # The control WebSocket: test_sprites_py_control.py.
    "control.ControlConnection.close",
    "control.ControlConnection.connect",
    "control.ControlConnection.is_closed",
    "control.ControlConnection.start_op",
    "control.ControlPool.acquire",
    "control.ControlPool.close",
    "control.ControlPool.has_connections",
    "control.ControlPool.release",
    "control.ControlPool.size",
    "control.OpConn.close",
    "control.OpConn.complete",
    "control.OpConn.get_exit_code",
    "control.OpConn.get_stderr",
    "control.OpConn.get_stdout",
    "control.OpConn.handle_data",
    "control.OpConn.handle_text",
    "control.OpConn.is_closed",
    "control.OpConn.resize",
    "control.OpConn.send_eof",
    "control.OpConn.signal",
    "control.OpConn.wait",
    "control.OpConn.write",
    "control.close_control_connection",
    "control.close_control_pools",
    "control.get_control_connection",
    "control.has_control_connection",
    "control.release_control_connection",
    "websocket.run_ws_command_via_control",
    "sprite.Sprite.get_control_connection",
    "sprite.Sprite.close_control_connection",
    "sprite.Sprite.has_control_connection",
    "async_sprite.AsyncSprite.get_control_connection",
    "async_sprite.AsyncSprite.close_control_connection",
    "async_sprite.AsyncSprite.has_control_connection",
    # SpritesClient
    "client.SpritesClient.close",
    "client.SpritesClient.create_sprite",
    "client.SpritesClient.delete_sprite",
    "client.SpritesClient.destroy_sprite",
    "client.SpritesClient.get_sprite",
    "client.SpritesClient.http_client",
    "client.SpritesClient.list_all_sprites",
    "client.SpritesClient.list_sprites",
    "client.SpritesClient.sprite",
    "client.SpritesClient.update_sprite",
    "client.SpritesClient.update_url_settings",
    "client.SpritesClient.upgrade_sprite",
    # Sprite
    "sprite.Sprite.attach_session",
    "sprite.Sprite.command",
    "sprite.Sprite.create_checkpoint",
    "sprite.Sprite.create_service",
    "sprite.Sprite.delete",
    "sprite.Sprite.delete_service",
    "sprite.Sprite.destroy",
    "sprite.Sprite.filesystem",
    "sprite.Sprite.get_checkpoint",
    "sprite.Sprite.get_network_policy",
    "sprite.Sprite.get_service",
    "sprite.Sprite.list_checkpoints",
    "sprite.Sprite.list_services",
    "sprite.Sprite.list_sessions",
    "sprite.Sprite.restore_checkpoint",
    "sprite.Sprite.run",
    "sprite.Sprite.signal_service",
    "sprite.Sprite.start_service",
    "sprite.Sprite.stop_service",
    "sprite.Sprite.update",
    "sprite.Sprite.update_network_policy",
    "sprite.Sprite.update_url_settings",
    "sprite.Sprite.upgrade",
    "sprite.Sprite.use_control_mode",
    # Commands
    "exec.Cmd.combined_output",
    "exec.Cmd.exit_code",
    "exec.Cmd.output",
    "exec.Cmd.run",
    "exec.Cmd.set_tty",
    "exec.Cmd.set_tty_size",
    "exec.run",
    "websocket.WSCommand.close",
    "websocket.WSCommand.get_stderr",
    "websocket.WSCommand.get_stdout",
    "websocket.WSCommand.resize",
    "websocket.WSCommand.start",
    "websocket.WSCommand.wait",
    "websocket.run_ws_command",
    "loop.get_existing_loop",
    "loop.get_loop",
    "loop.run_sync",
    "loop.stop_loop",
    # Sessions, checkpoints, services, policy (module functions and streams)
    "session.KillStream.close",
    "session.KillStream.process_all",
    "session.kill_session",
    "session.list_sessions",
    "checkpoint.CheckpointStream.close",
    "checkpoint.RestoreStream.close",
    "checkpoint.create_checkpoint",
    "checkpoint.get_checkpoint",
    "checkpoint.list_checkpoints",
    "checkpoint.restore_checkpoint",
    "services.ServiceStream.close",
    "services.ServiceStream.process_all",
    "services.create_service",
    "services.delete_service",
    "services.get_service",
    "services.list_services",
    "services.signal_service",
    "services.start_service",
    "services.stop_service",
    "policy.get_network_policy",
    "policy.update_network_policy",
    # Errors and result types
    "exceptions.APIError.get_retry_after_seconds",
    "exceptions.APIError.is_concurrent_limit_exceeded",
    "exceptions.APIError.is_creation_rate_limited",
    "exceptions.APIError.is_rate_limit_error",
    "exceptions.ExecError.exit_code",
    "exceptions.parse_api_error",
    "types.DirEntry.is_file",
    "types.FileStat.is_file",
    # Filesystem (sync)
    "filesystem.SpriteFilesystem.cwd",
    "filesystem.SpriteFilesystem.path",
    "filesystem.SpriteFilesystem.root",
    *(f"filesystem.SpritePath.{m}" for m in _PATH_METHODS),
    # AsyncSpritesClient
    "async_client.AsyncSpritesClient.aclose",
    "async_client.AsyncSpritesClient.create_sprite",
    "async_client.AsyncSpritesClient.delete_sprite",
    "async_client.AsyncSpritesClient.destroy_sprite",
    "async_client.AsyncSpritesClient.get_sprite",
    "async_client.AsyncSpritesClient.http_client",
    "async_client.AsyncSpritesClient.list_all_sprites",
    "async_client.AsyncSpritesClient.list_sprites",
    "async_client.AsyncSpritesClient.sprite",
    "async_client.AsyncSpritesClient.update_sprite",
    "async_client.AsyncSpritesClient.update_url_settings",
    "async_client.AsyncSpritesClient.upgrade_sprite",
    # AsyncSprite
    *(f"async_sprite.AsyncSprite.{m}" for m in (
        "attach_session", "command", "create_checkpoint", "create_service",
        "delete", "delete_service", "destroy", "filesystem", "get_checkpoint",
        "get_network_policy", "get_service", "list_checkpoints", "list_services",
        "list_sessions", "restore_checkpoint", "run", "signal_service",
        "start_service", "stop_service", "update", "update_network_policy",
        "update_url_settings", "upgrade", "use_control_mode",
    )),
    # AsyncCmd
    "async_exec.AsyncCmd.combined_output",
    "async_exec.AsyncCmd.exit_code",
    "async_exec.AsyncCmd.output",
    "async_exec.AsyncCmd.run",
    "async_exec.AsyncCmd.set_tty",
    "async_exec.AsyncCmd.set_tty_size",
    "async_exec.run",
    # Filesystem (async)
    "async_filesystem.AsyncSpriteFilesystem.cwd",
    "async_filesystem.AsyncSpriteFilesystem.path",
    "async_filesystem.AsyncSpriteFilesystem.root",
    *(f"async_filesystem.AsyncSpritePath.{m}" for m in _PATH_METHODS),
}


def _members():
    """(name, owner, member, raw attribute) for every public call."""
    import sprites

    for info in pkgutil.iter_modules(sprites.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"sprites.{info.name}")
        for var, obj in list(vars(mod).items()):
            if var.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isclass(obj):
                # An alias (ExitError = ExecError) is the same class once.
                if obj.__name__ != var:
                    continue
                for m, _ in inspect.getmembers(obj):
                    if m.startswith("_"):
                        continue
                    raw = inspect.getattr_static(obj, m)
                    if isinstance(raw, (property, staticmethod, classmethod)) or inspect.isfunction(raw):
                        yield f"{info.name}.{var}.{m}", obj, m, raw
            elif inspect.isfunction(obj):
                yield f"{info.name}.{var}", mod, var, obj


def public_names():
    return {name for name, *_ in _members()}


CALLED = set()


def _recording(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        CALLED.add(name)
        return fn(*args, **kwargs)

    return wrapper


def record():
    """Wrap every public call so that calling it adds its name to CALLED.
    Behaviour is unchanged: the wrapper calls the SDK's own function (an
    async one returns its coroutine or generator as before)."""
    for name, owner, member, raw in list(_members()):
        if isinstance(raw, property):
            new = property(_recording(name, raw.fget), raw.fset, raw.fdel, raw.__doc__)
        elif isinstance(raw, staticmethod):
            new = staticmethod(_recording(name, raw.__func__))
        elif isinstance(raw, classmethod):
            new = classmethod(_recording(name, raw.__func__))
        else:
            new = _recording(name, raw)
        # Set on the class named, not the base that defines it, so that
        # SpritePath.name and AsyncSpritePath.name are told apart.
        setattr(owner, member, new)
