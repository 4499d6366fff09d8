"""A package whose views import the app before the package has made it: a circular import."""

from flask import Flask

from tests.apps.circular import views  # noqa: F401  (registers the views; it needs `app`, not made yet)

app = Flask(__name__)
