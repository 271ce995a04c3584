"""A real SSH handshake without a network: a paramiko server on one end of a socketpair
offers the given host keys and refuses every login, so a client that gets as far as
authentication has accepted the host key."""
from __future__ import annotations

import socket
import threading

import paramiko
from fabric import Config, Connection


class _RefuseAll(paramiko.ServerInterface):
    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_FAILED


def serve(host_keys: list[paramiko.PKey]) -> socket.socket:
    """Start a server thread on one end of a socketpair; return the client's end."""
    client_end, server_end = socket.socketpair()

    def run():
        t = paramiko.Transport(server_end)
        for k in host_keys:
            t.add_server_key(k)
        try:
            t.start_server(server=_RefuseAll())
            t.accept(5)
        except Exception:
            pass
        finally:
            t.close()

    threading.Thread(target=run, daemon=True).start()
    return client_end


def connection(host_keys: list[paramiko.PKey], ssh_config: dict, host: str = "web1",
               user: str = "deploy", settings: dict | None = None) -> Connection:
    """A Fabric Connection whose socket leads to `serve(host_keys)`; `ssh_config` replaces
    what Fabric parsed (known_hosts files, StrictHostKeyChecking, …), `settings` are the
    kit's (`flasksample:`)."""
    config = Config(overrides={"flasksample": dict(settings or {})})
    conn = Connection(host, user=user, config=config, connect_timeout=5, connect_kwargs={
        "sock": serve(host_keys), "pkey": paramiko.ECDSAKey.generate(),
        "look_for_keys": False, "allow_agent": False})
    conn.ssh_config = dict(ssh_config)
    return conn


class _Exec(paramiko.ServerInterface):
    """Accepts any key and runs `on_exec(channel, command, transport)` for each command."""

    def __init__(self, on_exec, transport_box):
        self.on_exec, self.box = on_exec, transport_box

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else \
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        threading.Thread(target=self.on_exec, args=(channel, command.decode(), self.box[0]),
                         daemon=True).start()
        return True


def serve_commands(host_key: paramiko.PKey, on_exec, sock: socket.socket | None = None):
    """A server that logs anyone in and hands each command to `on_exec`; returns the client's
    end of a socketpair, or serves the given (accepted TCP) socket."""
    client_end = None
    if sock is None:
        client_end, sock = socket.socketpair()
    box = []

    def run():
        t = paramiko.Transport(sock)
        box.append(t)
        t.add_server_key(host_key)
        try:
            t.start_server(server=_Exec(on_exec, box))
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the client went away first: nothing to serve

    threading.Thread(target=run, daemon=True).start()
    return client_end
