"""The OpenAPI document and a page that shows it (no login: it holds no data)."""
from flask import jsonify
from flask import render_template

from desk.web.api import openapi
from desk.web.api import problems
from desk.web.api import route


@route("/openapi.json", public=True)
def openapi_document():
    """This API's OpenAPI 3.1 document."""
    return jsonify(openapi.document())


@route("/docs", media="text/html", public=True)
def docs():
    """The API documentation page."""
    return render_template("api/docs.html", doc=openapi.document(), problems=problems.KINDS,
                           type_base=problems.TYPE_BASE)
