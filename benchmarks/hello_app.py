"""The reference of ``benchmarks.request_path``: Flask's hello world, served by the same gunicorn."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, World!"
