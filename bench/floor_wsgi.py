"""Scenario 13's floor: the smallest WSGI application, for what gunicorn and the clients alone cost on this machine."""

BODY = b'{"status": "ok"}'


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
