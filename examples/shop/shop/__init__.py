"""A small shop, written the way Flask's tutorial writes apps: an app factory in a package,
templates and static files inside it, SQLite in the instance folder, `flask` CLI commands.

    flask --app shop init-db     create the tables (idempotent: the release_command)
    flask --app shop worker      process new orders until SIGTERM
    flask --app shop run         development server

It knows nothing about the deploy kit: no health endpoint, no gunicorn.conf.py.
"""
import os

from flask import Flask, jsonify, render_template, request

from shop import db

GREETING = "Welcome to the shop"


def create_app():
    app = Flask(__name__)
    app.config["DATABASE"] = os.path.join(app.instance_path, "shop.sqlite")
    db.init_app(app)

    @app.route("/")
    def index():
        orders = db.get().execute("SELECT count(*) FROM orders").fetchone()[0]
        return render_template("index.html", greeting=GREETING, orders=orders)

    @app.route("/orders", methods=["POST"])
    def order():
        item = request.form.get("item", "tea")
        cur = db.get().execute("INSERT INTO orders (item, status) VALUES (?, 'new')", (item,))
        db.get().commit()
        return jsonify(id=cur.lastrowid), 201

    @app.route("/orders")
    def orders():
        rows = db.get().execute("SELECT id, item, status, worker FROM orders ORDER BY id").fetchall()
        return jsonify([dict(r) for r in rows])

    @app.route("/worker")
    def worker():
        row = db.get().execute("SELECT pid, release, started FROM worker_starts "
                               "ORDER BY rowid DESC LIMIT 1").fetchone()
        return jsonify(dict(row) if row else {})

    return app
