"""An app whose schema Flask-Migrate makes: its table exists once `flask db upgrade` has run (the release command's
tests). SQLite in the instance folder unless DATABASE_URL names another database (`up --with postgres`)."""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

app = Flask(__name__)
Production(app)  # sets SQLALCHEMY_DATABASE_URI from DATABASE_URL when it is set
app.config.setdefault("SQLALCHEMY_DATABASE_URI", "sqlite:///notes.db")  # in the instance folder
db = SQLAlchemy(app)
Migrate(app, db, directory=os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations"))


class Note(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "notes"
    id = sa.Column(sa.Integer, primary_key=True)
    text = sa.Column(sa.String(200), nullable=False)


@app.post("/notes")
def add_note() -> ResponseReturnValue:
    db.session.add(Note(text=request.get_data(as_text=True)))
    db.session.commit()
    return "added", 201


@app.get("/notes")
def notes() -> ResponseReturnValue:
    return jsonify([note.text for note in db.session.scalars(sa.select(Note).order_by(Note.id))])
