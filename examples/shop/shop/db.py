"""SQLite access and the CLI commands: init-db (tables), worker (the background process)."""
import os
import signal
import sqlite3
import time

import click
from flask import current_app, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL, status TEXT NOT NULL, worker INTEGER
);
CREATE TABLE IF NOT EXISTS worker_starts (pid INTEGER, release TEXT, started REAL);
"""


def connect():
    conn = sqlite3.connect(current_app.config["DATABASE"], timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def get():
    if "db" not in g:
        g.db = connect()
    return g.db


def close(exc=None):
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def release():
    """The release this process runs (the kit writes REVISION; 'dev' in a checkout)."""
    try:
        with open("REVISION") as f:
            return f.read().strip()
    except OSError:
        return "dev"


@click.command("init-db")
def init_db():
    """Create the tables that do not exist yet (safe to run on every deploy)."""
    os.makedirs(current_app.instance_path, exist_ok=True)
    conn = connect()
    conn.executescript(SCHEMA)
    conn.close()
    click.echo(f"database ready: {current_app.config['DATABASE']}")


@click.command("worker")
def worker():
    """Mark new orders as done, one at a time, until SIGTERM (then finish the current one)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    conn = connect()
    conn.execute("INSERT INTO worker_starts VALUES (?, ?, ?)", (os.getpid(), release(), time.time()))
    conn.commit()
    click.echo(f"worker {os.getpid()} of release {release()} started")
    while not stop:
        row = conn.execute("SELECT id FROM orders WHERE status = 'new' ORDER BY id LIMIT 1").fetchone()
        if row:
            conn.execute("UPDATE orders SET status = 'done', worker = ? WHERE id = ?",
                         (os.getpid(), row["id"]))
            conn.commit()
        else:
            time.sleep(0.2)
    click.echo(f"worker {os.getpid()} stopped")


def init_app(app):
    app.teardown_appcontext(close)
    app.cli.add_command(init_db)
    app.cli.add_command(worker)
