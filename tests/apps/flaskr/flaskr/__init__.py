"""The Flask tutorial's layout: an application package with a factory (`flask --app flaskr run`)."""
import logging
import os

from flask import Flask, abort

log = logging.getLogger(__name__)
POSTS = {1: "hello", 2: "world"}


def create_app():
    app = Flask(__name__)

    @app.get("/")
    def index():
        return "flaskr"

    @app.get("/posts/<int:post_id>")
    def post(post_id):
        if post_id not in POSTS:
            abort(404)
        log.info("post read", extra={"post_id": post_id, "password": "hunter2"})
        return {"id": post_id, "title": POSTS[post_id]}

    @app.get("/crash")
    def crash():
        raise RuntimeError("flaskr fell over")

    if os.environ.get("OBSBOX_IN_APP") == "1":
        import obsbox

        obsbox.configure(service_name="flaskr")
        obsbox.instrument(app)  # the README's line, its result not used
    return app
